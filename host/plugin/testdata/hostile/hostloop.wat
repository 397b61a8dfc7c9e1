;; Hand-written hostile module for host/plugin/hostile_test.go (containment suite).
;; Regenerate the .wasm with: wat2wasm NAME.wat -o NAME.wasm (Debian package wabt);
;; TestHostileWasmUpToDate checks the committed .wasm when wat2wasm is installed.
;; hostloop: authority_decide calls the host's clock without end: every host
;; call is charged to the work budget.
(module
  (import "authority" "now" (func $now (result i64)))
  (memory (export "memory") 2)
  (func (export "authority_abi_version") (result i32) (i32.const 1))
  (func (export "authority_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "authority_decide") (param i32 i32) (result i64)
    (loop $again
      (drop (call $now))
      (br $again))
    (i64.const 0)))
