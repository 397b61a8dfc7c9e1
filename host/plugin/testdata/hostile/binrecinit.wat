;; Hand-written hostile module for host/plugin/hostile_test.go (containment suite).
;; Regenerate the .wasm with: wat2wasm NAME.wat -o NAME.wasm (Debian package wabt);
;; TestHostileWasmUpToDate checks the committed .wasm when wat2wasm is installed.
;; binrecinit: _initialize runs a loop-free binary recursion 40 deep: the
;; init work budget stops it, so start-up, reload and inspect never hang.
(module
  (memory (export "memory") 2)
  (data (i32.const 16) "\02\01\01\00\00\00\00\00") ;; encoded abi.Allowed()
  (func (export "authority_abi_version") (result i32) (i32.const 1))
  (func (export "authority_alloc") (param i32) (result i32) (i32.const 1024))
  (func $tree (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0))
      (then (i32.const 1))
      (else (i32.add
        (call $tree (i32.sub (local.get 0) (i32.const 1)))
        (call $tree (i32.sub (local.get 0) (i32.const 1)))))))
  (func (export "_initialize") (drop (call $tree (i32.const 40))))
  (func (export "authority_decide") (param i32 i32) (result i64)
    (i64.const 68719476744)))
