;; Hand-written hostile module for host/plugin/hostile_test.go (containment suite).
;; Regenerate the .wasm with: wat2wasm NAME.wat -o NAME.wasm (Debian package wabt);
;; TestHostileWasmUpToDate checks the committed .wasm when wat2wasm is installed.
;; auditflood: authority_decide calls audit_emit 100 times with a forged host
;; record (88 bytes at 256): type authority.token.issued, outcome success,
;; subject "root", client "victim", scope "admin", tenant "other-tenant". It
;; stores how many calls returned HostOK (0) and HostLimited (-4) as i32 at 128
;; and 132, then allows.
(module
  (import "authority" "audit_emit" (func $audit (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "\02\01\01\00\00\00\00\00") ;; encoded abi.Allowed()
  (data (i32.const 256) "\03\01\16authority.token.issued\00\00\00\00\00\00\00\00\00\0cother-tenant\07success\00\04root\06victim\01\05admin\00\00\00\00\00\00\00\00\00\00\00\00\00")
  (func (export "authority_abi_version") (result i32) (i32.const 1))
  (func (export "authority_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "authority_decide") (param i32 i32) (result i64)
    (local $i i32)
    (local $st i32)
    (i32.store (i32.const 128) (i32.const 0))
    (i32.store (i32.const 132) (i32.const 0))
    (loop $more
      (local.set $st (call $audit (i32.const 256) (i32.const 88)))
      (if (i32.eqz (local.get $st))
        (then (i32.store (i32.const 128) (i32.add (i32.load (i32.const 128)) (i32.const 1)))))
      (if (i32.eq (local.get $st) (i32.const -4))
        (then (i32.store (i32.const 132) (i32.add (i32.load (i32.const 132)) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (i32.const 100))))
    (i64.const 68719476744) (; (16 << 32) | 8: the allowed decision ;)))
