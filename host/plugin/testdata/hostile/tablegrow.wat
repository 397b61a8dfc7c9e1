;; Hand-written hostile module for host/plugin/hostile_test.go (containment suite).
;; Regenerate the .wasm with: wat2wasm NAME.wat -o NAME.wasm (Debian package wabt);
;; TestHostileWasmUpToDate checks the committed .wasm when wat2wasm is installed.
;; tablegrow: authority_decide grows its table (declared without a maximum)
;; by 2^20 entries at a time until table.grow fails, then traps unless the
;; table stayed within the host's cap (65,536 entries), in which case it
;; allows. Without the cap one grow of 2^31 entries took the host down.
(module
  (memory (export "memory") 2)
  (table $t 1 funcref)
  (data (i32.const 16) "\02\01\01\00\00\00\00\00") ;; encoded abi.Allowed()
  (func (export "authority_abi_version") (result i32) (i32.const 1))
  (func (export "authority_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "authority_decide") (param i32 i32) (result i64)
    (drop (table.grow $t (ref.null func) (i32.const 0x7fffffff)))
    (block $capped
      (loop $more
        (br_if $capped (i32.eq (table.grow $t (ref.null func) (i32.const 0x100000)) (i32.const -1)))
        (br $more)))
    (if (i32.gt_u (table.size $t) (i32.const 65536)) (then unreachable))
    (i64.const 68719476744)))
