;; Hand-written hostile module for host/plugin/hostile_test.go (containment suite).
;; Regenerate the .wasm with: wat2wasm NAME.wat -o NAME.wasm (Debian package wabt);
;; TestHostileWasmUpToDate checks the committed .wasm when wat2wasm is installed.
;; chase: authority_decide walks 16 MiB of memory forever, each address
;; depending on the value loaded before (a cache miss per step that no
;; prefetcher hides), with a 64-bit division per step: the costliest code
;; per work unit we know of, which calibrates the units-per-millisecond.
(module
  (memory (export "memory") 256)
  (func (export "authority_abi_version") (result i32) (i32.const 1))
  (func (export "authority_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "authority_decide") (param i32 i32) (result i64)
    (local $a i32) (local $x i64)
    (local.set $x (i64.const 0x7fffffffffff))
    (loop $walk
      (local.set $a (i32.and
        (i32.xor (i32.load (local.get $a))
                 (i32.add (i32.mul (local.get $a) (i32.const 1103515245)) (i32.const 12345)))
        (i32.const 0xfffffc)))
      (local.set $x (i64.div_u (local.get $x) (i64.or (i64.extend_i32_u (local.get $a)) (i64.const 3))))
      (local.set $x (i64.add (local.get $x) (i64.const 0x7fffffffffff)))
      (br $walk))
    (i64.const 0)))
