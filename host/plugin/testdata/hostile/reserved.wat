;; Hand-written hostile module for host/plugin/hostile_test.go (containment suite).
;; Regenerate the .wasm with: wat2wasm NAME.wat -o NAME.wasm (Debian package wabt);
;; TestHostileWasmUpToDate checks the committed .wasm when wat2wasm is installed.
;; reserved: exports a global under the name the host reserves for the
;; injected work budget, hoping the host would set it instead: refused.
(module
  (memory (export "memory") 2)
  (global (export "authority_meter_fuel") (mut i64) (i64.const 0))
  (func (export "authority_abi_version") (result i32) (i32.const 1))
  (func (export "authority_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "authority_decide") (param i32 i32) (result i64)
    (i64.const 0)))
