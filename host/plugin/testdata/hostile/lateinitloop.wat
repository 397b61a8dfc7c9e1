;; Hand-written hostile module for host/plugin/hostile_test.go (containment suite).
;; Regenerate the .wasm with: wat2wasm NAME.wat -o NAME.wasm (Debian package wabt);
;; TestHostileWasmUpToDate checks the committed .wasm when wat2wasm is installed.
;; lateinitloop: _initialize spins forever once the host clock (granted
;; "clock") passes 2030-01-01; authority_decide always traps, so every
;; call discards its instance and the replacement runs _initialize again.
(module
  (import "authority" "now" (func $now (result i64)))
  (memory (export "memory") 2)
  (data (i32.const 16) "\02\01\01\00\00\00\00\00") ;; encoded abi.Allowed()
  (func (export "authority_abi_version") (result i32) (i32.const 1))
  (func (export "authority_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "_initialize")
    (if (i64.gt_s (call $now) (i64.const 1893456000000000000))
      (then (loop $spin (br $spin)))))
  (func (export "authority_decide") (param i32 i32) (result i64) unreachable))
