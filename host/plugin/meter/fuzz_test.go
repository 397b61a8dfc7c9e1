package meter

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetratelabs/wazero"
)

// FuzzRewrite: arbitrary bytes never make the rewriter panic, and every
// module wazero accepts and the rewriter accepts is still valid after
// rewriting (wazero compiles it).
func FuzzRewrite(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "hostile", "*.wasm"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add(testModule(typesI32, []testFunc{{typ: 0, body: []byte{0x03, 0x40, 0x20, 0, 0x0d, 0, 0x0b, 0x20, 0}}}, 1))
	f.Add(testModule(typesI32, []testFunc{{typ: 1, locals: 2, body: []byte{0x41, 0, 0x41, 0, 0x41, 9, 0xfc, 11, 0, 0x41, 1, 0x40, 0}}}, 0))
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	opts := DefaultOptions()
	opts.MaxModuleBytes = 1 << 20
	f.Fuzz(func(t *testing.T, wasm []byte) {
		res, err := Rewrite(wasm, opts)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		orig, err := rt.CompileModule(ctx, wasm)
		if err != nil {
			return // invalid input: the host refuses it at compilation either way
		}
		orig.Close(ctx)
		cm, err := rt.CompileModule(ctx, res.Wasm)
		if err != nil {
			t.Fatalf("valid module invalid after rewriting: %v", err)
		}
		cm.Close(ctx)
	})
}
