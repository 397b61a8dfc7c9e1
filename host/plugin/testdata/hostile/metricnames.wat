;; Hand-written hostile module for host/plugin/hostile_test.go (containment suite).
;; Regenerate the .wasm with: wat2wasm NAME.wat -o NAME.wasm (Debian package wabt);
;; TestHostileWasmUpToDate checks the committed .wasm when wat2wasm is installed.
;; metricnames: authority_decide adds 1 to 20 distinct counters m_a .. m_t with
;; metric_add, storing how many calls returned HostOK (0) and HostLimited (-4)
;; as i32 at 128 and 132, then allows.
(module
  (import "authority" "metric_add" (func $metric (param i32 i32 i64) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "\02\01\01\00\00\00\00\00") ;; encoded abi.Allowed()
  (data (i32.const 256) "m_a")
  (func (export "authority_abi_version") (result i32) (i32.const 1))
  (func (export "authority_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "authority_decide") (param i32 i32) (result i64)
    (local $i i32)
    (local $st i32)
    (i32.store (i32.const 128) (i32.const 0))
    (i32.store (i32.const 132) (i32.const 0))
    (loop $more
      (i32.store8 (i32.const 258) (i32.add (i32.const 97) (local.get $i)))
      (local.set $st (call $metric (i32.const 256) (i32.const 3) (i64.const 1)))
      (if (i32.eqz (local.get $st))
        (then (i32.store (i32.const 128) (i32.add (i32.load (i32.const 128)) (i32.const 1)))))
      (if (i32.eq (local.get $st) (i32.const -4))
        (then (i32.store (i32.const 132) (i32.add (i32.load (i32.const 132)) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (i32.const 20))))
    (i64.const 68719476744) (; (16 << 32) | 8: the allowed decision ;)))
