;; Hand-written hostile module for host/plugin/hostile_test.go (containment suite).
;; Regenerate the .wasm with: wat2wasm NAME.wat -o NAME.wasm (Debian package wabt);
;; TestHostileWasmUpToDate checks the committed .wasm when wat2wasm is installed.
;; bulkfill: authority_decide fills its whole 1 MiB memory again and again
;; with memory.fill: one instruction per megabyte, charged by its length.
(module
  (memory (export "memory") 16)
  (func (export "authority_abi_version") (result i32) (i32.const 1))
  (func (export "authority_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "authority_decide") (param i32 i32) (result i64)
    (loop $again
      (memory.fill (i32.const 0) (i32.const 7) (i32.const 1048576))
      (br $again))
    (i64.const 0)))
