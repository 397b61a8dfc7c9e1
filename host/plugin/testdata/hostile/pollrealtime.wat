;; Hand-written hostile module for host/plugin/hostile_test.go (containment suite).
;; Regenerate the .wasm with: wat2wasm NAME.wat -o NAME.wasm (Debian package wabt);
;; TestHostileWasmUpToDate checks the committed .wasm when wat2wasm is installed.
;; pollrealtime: authority_decide sleeps in poll_oneoff until 1 s after the Unix
;; epoch on the realtime clock (an absolute subscription), then allows. Measured
;; against the host's real time that moment is long past and the call returns at
;; once, so the sleep would tell the guest the wall time; against the guest's
;; realtime clock without the clock grant (the fixed epoch) it is 1 s away.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "\02\01\01\00\00\00\00\00") ;; encoded abi.Allowed()
  (func (export "authority_abi_version") (result i32) (i32.const 1))
  (func (export "authority_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "authority_decide") (param i32 i32) (result i64)
    ;; subscription at 4096 (48 bytes): userdata 0, tag 0 (clock),
    ;; clock id 0 (realtime) at +16, timeout ns at +24, precision +32,
    ;; flags 1 (subscription_clock_abstime) at +40.
    (i64.store (i32.const 4096) (i64.const 7))
    (i32.store8 (i32.const 4104) (i32.const 0))
    (i32.store (i32.const 4112) (i32.const 0))
    (i64.store (i32.const 4120) (i64.const 1000000000))
    (i64.store (i32.const 4128) (i64.const 0))
    (i32.store16 (i32.const 4136) (i32.const 1))
    ;; events at 8192, count at 8256
    (drop (call $poll (i32.const 4096) (i32.const 8192) (i32.const 1) (i32.const 8256)))
    (i64.const 68719476744) (; (16 << 32) | 8: the allowed decision ;)))
