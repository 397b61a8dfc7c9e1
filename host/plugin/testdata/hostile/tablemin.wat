;; Hand-written hostile module for host/plugin/hostile_test.go (containment suite).
;; Regenerate the .wasm with: wat2wasm NAME.wat -o NAME.wasm (Debian package wabt);
;; TestHostileWasmUpToDate checks the committed .wasm when wat2wasm is installed.
;; tablemin: declares a table of 2^27 entries at minimum (1 GiB of host
;; memory per instance): refused at load, before any instance exists.
(module
  (memory (export "memory") 2)
  (table 134217728 funcref)
  (func (export "authority_abi_version") (result i32) (i32.const 1))
  (func (export "authority_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "authority_decide") (param i32 i32) (result i64)
    (i64.const 68719476744)))
