;; Hand-written hostile module for host/plugin/hostile_test.go (containment suite).
;; Regenerate the .wasm with: wat2wasm NAME.wat -o NAME.wasm (Debian package wabt);
;; TestHostileWasmUpToDate checks the committed .wasm when wat2wasm is installed.
;; slowevent: a slow telemetry plugin. authority_event sleeps 200 ms in
;; poll_oneoff (a relative monotonic subscription), then succeeds; with a call
;; timeout above 200 ms every event is delivered, slowly, and nothing fails.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "authority_abi_version") (result i32) (i32.const 1))
  (func (export "authority_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "authority_event") (param i32 i32) (result i32)
    ;; subscription at 4096 (48 bytes): userdata 0, tag 0 (clock),
    ;; clock id 1 (monotonic) at +16, timeout ns at +24, precision +32, flags 0 at +40.
    (i64.store (i32.const 4096) (i64.const 7))
    (i32.store8 (i32.const 4104) (i32.const 0))
    (i32.store (i32.const 4112) (i32.const 1))
    (i64.store (i32.const 4120) (i64.const 200000000))
    (i64.store (i32.const 4128) (i64.const 0))
    (i32.store16 (i32.const 4136) (i32.const 0))
    ;; events at 8192, count at 8256
    (drop (call $poll (i32.const 4096) (i32.const 8192) (i32.const 1) (i32.const 8256)))
    (i32.const 0)))
