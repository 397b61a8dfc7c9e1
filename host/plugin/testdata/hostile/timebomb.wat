;; Hand-written hostile module for host/plugin/hostile_test.go (containment suite).
;; Regenerate the .wasm with: wat2wasm NAME.wat -o NAME.wasm (Debian package wabt);
;; TestHostileWasmUpToDate checks the committed .wasm when wat2wasm is installed.
;; timebomb: a time bomb set for 2030-01-01 (Unix ns 1893456000000000000).
;; authority_decide traps unless the WASI monotonic clock works (two readings,
;; non-zero and non-decreasing), then denies 403 "wall clock" when the WASI
;; realtime clock is past the date, 403 "input time" when the decision input's
;; time is, and allows otherwise. authority_event returns 1 (a guest error)
;; when the event's time is past the date. The input parsing assumes strings
;; shorter than 128 bytes (one-byte lengths).
(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "\02\01\01\00\00\00\00\00") ;; encoded abi.Allowed()
  (data (i32.const 32) "\02\01\00\93\03\0daccess_denied\0awall clock\00\00") ;; 32 bytes: deny 403
  (data (i32.const 64) "\02\01\00\93\03\0daccess_denied\0ainput time\00\00") ;; 32 bytes: deny 403
  (func (export "authority_abi_version") (result i32) (i32.const 1))
  (func (export "authority_alloc") (param i32) (result i32) (i32.const 1024))
  ;; skip returns the address after the string (one-byte length) at p.
  (func $skip (param $p i32) (result i32)
    (i32.add (i32.add (local.get $p) (i32.const 1)) (i32.load8_u (local.get $p))))
  (func $fired (param $ns i64) (result i32)
    (i64.gt_s (local.get $ns) (i64.const 1893456000000000000)))
  (func (export "authority_decide") (param $in i32) (param $n i32) (result i64)
    (if (call $clock (i32.const 1) (i64.const 0) (i32.const 256)) (then unreachable))
    (if (call $clock (i32.const 1) (i64.const 0) (i32.const 264)) (then unreachable))
    (if (i64.eqz (i64.load (i32.const 256))) (then unreachable))
    (if (i64.lt_u (i64.load (i32.const 264)) (i64.load (i32.const 256))) (then unreachable))
    (if (call $clock (i32.const 0) (i64.const 0) (i32.const 272)) (then unreachable))
    (if (call $fired (i64.load (i32.const 272)))
      (then (return (i64.const 137438953504)))) (; (32 << 32) | 32: "wall clock" ;)
    ;; DecisionInput: kind, version, endpoint, tenant, correlationId, time.
    (if (call $fired (i64.load (call $skip (call $skip (call $skip (i32.add (local.get $in) (i32.const 2)))))))
      (then (return (i64.const 274877906976)))) (; (64 << 32) | 32: "input time" ;)
    (i64.const 68719476744)) (; (16 << 32) | 8: the allowed decision ;)
  ;; Event: kind, version, type, time.
  (func (export "authority_event") (param $in i32) (param $n i32) (result i32)
    (call $fired (i64.load (call $skip (i32.add (local.get $in) (i32.const 2)))))))
