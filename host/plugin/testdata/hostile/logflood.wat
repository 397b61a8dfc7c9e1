;; Hand-written hostile module for host/plugin/hostile_test.go (containment suite).
;; Regenerate the .wasm with: wat2wasm NAME.wat -o NAME.wasm (Debian package wabt);
;; TestHostileWasmUpToDate checks the committed .wasm when wat2wasm is installed.
;; logflood: authority_decide logs 100000 lines through the granted log
;; host function, then allows.
(module
  (import "authority" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "\02\01\01\00\00\00\00\00") ;; encoded abi.Allowed()
  (func (export "authority_abi_version") (result i32) (i32.const 1))
  (func (export "authority_alloc") (param i32) (result i32) (i32.const 1024))
  (data (i32.const 64) "flood line")
  (func (export "authority_decide") (param i32 i32) (result i64)
    (local $i i32)
    (loop $more
      (call $log (i32.const 1) (i32.const 64) (i32.const 10))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (i32.const 100000))))
    (i64.const 68719476744) (; (16 << 32) | 8: the allowed decision ;)))
