;; Hand-written hostile module for host/plugin/hostile_test.go (containment suite).
;; Regenerate the .wasm with: wat2wasm NAME.wat -o NAME.wasm (Debian package wabt);
;; TestHostileWasmUpToDate checks the committed .wasm when wat2wasm is installed.
;; binrec: authority_decide calls a binary recursion 40 deep (2^40 calls)
;; whose call tree has no loop at all: a deadline checked only at loop
;; headers never fires; the work charged at every function entry does.
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
  (func (export "authority_decide") (param i32 i32) (result i64)
    (drop (call $tree (i32.const 40)))
    (i64.const 68719476744) (; (16 << 32) | 8: the allowed decision ;)))
