package plugin

// The compilation cache holds native code: a changed entry must never run
// (cache.go). These tests go through NewManager, as the server does.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/pluginspec"
	"stellaops.org/authority/internal/testenv"
)

// decisionBody is an authority_decide body that writes d's encoding at
// offset 16 and returns it: deny-all and allow-all modules that differ only
// in their code, the shape an attacker swapping compiled code needs.
func decisionBody(d abi.Decision) []byte {
	enc := abi.AppendDecision(nil, &d)
	var body []byte
	for off := 0; off < len(enc); off += 8 {
		var chunk [8]byte
		copy(chunk[:], enc[off:])
		body = cat(body, i32c(int32(16+off)), i64c(int64(binary.LittleEndian.Uint64(chunk[:]))),
			[]byte{0x37, 0x03, 0x00}) // i64.store align=8 offset=0
	}
	return cat(body, i64c(16<<32|int64(len(enc))))
}

var (
	denyAll  = abiModule(1, decisionBody(abi.Denied(403, "access_denied", "deny-all")))
	allowAll = abiModule(1, decisionBody(abi.Allowed()))
)

// signedSpec writes m, signs it with priv and requires the signature.
func signedSpec(t *testing.T, m wasmModule, priv ed25519.PrivateKey) Spec {
	t.Helper()
	s := writeModule(t, m)
	b, err := os.ReadFile(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path+SignatureSuffix, []byte(Sign(b, priv)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Name, s.RequireSignature = "policy", true
	return s
}

type cacheRun struct {
	m    *Manager
	logs *testenv.SyncBuffer
}

func startCached(t *testing.T, opts RuntimeOptions, s Spec, keys ...ed25519.PublicKey) cacheRun {
	t.Helper()
	r := cacheRun{logs: &testenv.SyncBuffer{}}
	opts.GuildKeys = keys
	m, err := NewManager(context.Background(), opts, map[string][]Spec{"a": {s}},
		Deps{Logger: slog.New(slog.NewTextHandler(r.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	r.m = m
	t.Cleanup(func() { m.Close(context.Background()) })
	return r
}

func (r cacheRun) decide(t *testing.T) abi.Decision {
	t.Helper()
	d, err := r.m.Decide(context.Background(), "a", &abi.DecisionInput{Endpoint: abi.HookToken, Client: "c"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// onlyEntry returns the path of the one cache entry under dir.
func onlyEntry(t *testing.T, dir string) string {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, "wazero-*", "*"))
	if len(paths) != 1 || !isEntryName(filepath.Base(paths[0])) {
		t.Fatalf("cache entries %v, want one", paths)
	}
	return paths[0]
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPlainWazeroCacheRunsSwappedCode shows the attack the seal defeats:
// in wazero's own file cache, the allow-all module's entry renamed to the
// deny-all module's name makes the pinned deny-all bytes allow.
func TestPlainWazeroCacheRunsSwappedCode(t *testing.T) {
	ctx := context.Background()
	compile := func(dir string, wasm []byte) wazero.Runtime {
		c, err := wazero.NewCompilationCacheWithDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(c))
		if _, err := rt.CompileModule(ctx, wasm); err != nil {
			t.Fatal(err)
		}
		return rt
	}
	denyDir, allowDir := t.TempDir(), t.TempDir()
	compile(denyDir, denyAll.bytes()).Close(ctx)
	compile(allowDir, allowAll.bytes()).Close(ctx)
	if err := os.WriteFile(onlyEntry(t, denyDir), readFile(t, onlyEntry(t, allowDir)), 0o600); err != nil {
		t.Fatal(err)
	}
	rt := compile(denyDir, denyAll.bytes())
	defer rt.Close(ctx)
	mod, err := rt.Instantiate(ctx, denyAll.bytes())
	if err != nil {
		t.Fatal(err)
	}
	res, err := mod.ExportedFunction("authority_decide").Call(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := mod.Memory().Read(uint32(res[0]>>32), uint32(res[0]))
	var d abi.Decision
	if err := abi.DecodeDecision(out, &d); err != nil || !d.Allow {
		t.Fatalf("the swapped entry did not run (decision %+v, %v): this test no longer shows the attack", d, err)
	}
}

// TestTamperedCacheEntryNeverRuns: a pinned, signed deny-all module is
// compiled into the cache; its entry is then changed (the realistic attack
// puts the allow-all module's code under its name); a new manager on that
// cache still denies, discards the entry, logs and counts it, and stores a
// freshly compiled one.
func TestTamperedCacheEntryNeverRuns(t *testing.T) {
	pub, priv := newKey(t)
	deny := signedSpec(t, denyAll, priv)
	allow := signedSpec(t, allowAll, priv)
	// The allow-all code as the host itself sealed it (same key, its own
	// name), and its raw wazero bytes.
	base := t.TempDir()
	key := filepath.Join(base, "cache.key")
	allowDir := filepath.Join(base, "allow")
	a := startCached(t, RuntimeOptions{CacheDir: allowDir, CacheKeyFile: key}, allow, pub)
	if d := a.decide(t); !d.Allow {
		t.Fatalf("allow-all module: %+v", d)
	}
	a.m.Close(context.Background())
	allowSealed := readFile(t, onlyEntry(t, allowDir))
	allowRaw := allowSealed[len(cacheMagic)+32:]

	attacks := []struct {
		name   string
		tamper func(t *testing.T, entry string) []byte
	}{
		{"allow-all entry sealed by this host moved under its name", func(*testing.T, string) []byte { return allowSealed }},
		{"allow-all code sealed with another key", func(t *testing.T, entry string) []byte {
			other := &diskCache{key: bytes.Repeat([]byte{7}, 32), sub: filepath.Base(filepath.Dir(entry))}
			f, err := os.CreateTemp(t.TempDir(), "forged")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := other.seal(f, filepath.Base(entry), bytes.NewReader(allowRaw)); err != nil {
				t.Fatal(err)
			}
			return readFile(t, f.Name())
		}},
		{"allow-all code unsealed (a plain wazero entry)", func(*testing.T, string) []byte { return allowRaw }},
		{"one byte of its code flipped", func(t *testing.T, entry string) []byte {
			b := readFile(t, entry)
			head := len(cacheMagic) + 32
			b[head+(len(b)-head)/2] ^= 0x01
			return b
		}},
		{"its seal copied onto the allow-all code", func(t *testing.T, entry string) []byte {
			return append(readFile(t, entry)[:len(cacheMagic)+32:len(cacheMagic)+32], allowRaw...)
		}},
	}
	for _, at := range attacks {
		t.Run(at.name, func(t *testing.T) {
			opts := RuntimeOptions{CacheDir: filepath.Join(t.TempDir(), "cache"), CacheKeyFile: key}
			first := startCached(t, opts, deny, pub)
			if d := first.decide(t); d.Allow || d.Status != 403 {
				t.Fatalf("deny-all module: %+v", d)
			}
			first.m.Close(context.Background())
			entry := onlyEntry(t, opts.CacheDir)

			if err := os.WriteFile(entry, at.tamper(t, entry), 0o600); err != nil {
				t.Fatal(err)
			}

			second := startCached(t, opts, deny, pub)
			if d := second.decide(t); d.Allow || d.Status != 403 || d.Error != "access_denied" {
				t.Fatalf("tampered cache: decision %+v, want the deny-all module's 403", d)
			}
			if st := second.m.Runtime().CacheStats(); st.Discarded != 1 || st.Verified != 0 || st.Written != 1 {
				t.Fatalf("stats %+v, want the entry discarded and a fresh one written", st)
			}
			if l := second.logs.String(); !strings.Contains(l, "authority.plugin.cache.discarded") || !strings.Contains(l, entry) {
				t.Fatalf("discard not logged with the entry's path:\n%s", l)
			}
			second.m.Close(context.Background())

			third := startCached(t, opts, deny, pub)
			if st := third.m.Runtime().CacheStats(); st.Discarded != 0 || st.Verified != 1 {
				t.Fatalf("stats after the rewrite %+v, want the fresh entry verified", st)
			}
		})
	}
}

// TestVerifiedCacheEntryReused: a cache that verifies is reused, nothing
// compiled again (wazero writes an entry whenever it compiles, so
// Written == 0 on the second start means its code came from the cache).
func TestVerifiedCacheEntryReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	opts := RuntimeOptions{CacheDir: dir}
	s := writeModule(t, denyAll)
	first := startCached(t, opts, s)
	if st := first.m.Runtime().CacheStats(); st != (CacheStats{Written: 1}) {
		t.Fatalf("first start: %+v, want one entry written", st)
	}
	private := first.m.Runtime().disk.private
	if fi, err := os.Stat(private); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("private directory %s: %v, %v", private, fi, err)
	}
	first.m.Close(context.Background())
	if _, err := os.Stat(private); !os.IsNotExist(err) {
		t.Fatalf("private directory %s left after Close: %v", private, err)
	}
	if fi, err := os.Stat(DefaultCacheKeyFile(dir)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi, err)
	}

	second := startCached(t, opts, s)
	if d := second.decide(t); d.Allow {
		t.Fatalf("decision %+v", d)
	}
	second.m.Close(context.Background())
	if st := second.m.Runtime().CacheStats(); st != (CacheStats{Verified: 1}) {
		t.Fatalf("second start: %+v, want the entry verified and reused, none written", st)
	}
}

// TestCacheReadsOnlyConfiguredModules: a start copies only the entries of
// the modules it compiles (named by the sealed index), so entries of
// modules no longer configured cost nothing, and they are removed once no
// index names them (here: aged past the hour a concurrent store may take).
// A tampered index is discarded like an entry: the module is compiled again.
func TestCacheReadsOnlyConfiguredModules(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	opts := RuntimeOptions{CacheDir: dir}
	old := startCached(t, opts, writeModule(t, allowAll))
	old.m.Close(context.Background())
	oldEntry := onlyEntry(t, dir)

	s := writeModule(t, denyAll)
	first := startCached(t, opts, s)
	first.m.Close(context.Background())
	if st := first.m.Runtime().CacheStats(); st != (CacheStats{Written: 1}) {
		t.Fatalf("first start: %+v, want the old module's entry left unread", st)
	}
	// Not yet pruned: written within the hour.
	if _, err := os.Stat(oldEntry); err != nil {
		t.Fatalf("recent entry pruned: %v", err)
	}
	past := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(oldEntry, past, past); err != nil {
		t.Fatal(err)
	}
	second := startCached(t, opts, s)
	second.m.Close(context.Background())
	if st := second.m.Runtime().CacheStats(); st != (CacheStats{Verified: 1}) {
		t.Fatalf("second start: %+v", st)
	}
	// The old module's record stays in the index until cacheRetention
	// without use, so its entry is kept meanwhile (still unread). Tampering
	// with the index discards it: the configured module is compiled again,
	// and the old entry, named by no record now, is pruned.
	index := second.m.Runtime().disk.indexPath()
	b := readFile(t, index)
	b[len(b)-2] ^= 1
	if err := os.WriteFile(index, b, 0o600); err != nil {
		t.Fatal(err)
	}
	third := startCached(t, opts, s)
	if d := third.decide(t); d.Allow {
		t.Fatalf("decision %+v", d)
	}
	third.m.Close(context.Background())
	if st := third.m.Runtime().CacheStats(); st.Discarded != 1 || st.Verified != 0 || st.Written != 1 {
		t.Fatalf("tampered index: %+v, want it discarded and the module compiled again", st)
	}
	if _, err := os.Stat(oldEntry); !os.IsNotExist(err) {
		t.Fatalf("entry no index names, older than an hour, not pruned: %v", err)
	}
}

// TestCacheDirPermissionsRefused: a cache directory group or others can
// write, or a key file they can read, is refused at runtime start, naming
// the path.
func TestCacheDirPermissionsRefused(t *testing.T) {
	if !pluginspec.ModeBitsEnforced {
		t.Skip("mode bits are not enforced on this system")
	}
	ctx := context.Background()
	base := t.TempDir()
	for _, mode := range []os.FileMode{0o770, 0o702, 0o777} {
		dir := filepath.Join(base, "cache"+mode.String())
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		_, err := NewRuntime(ctx, RuntimeOptions{CacheDir: dir})
		if err == nil || !strings.Contains(err.Error(), "plugin: compilation cache: "+dir+" is writable by group or others") {
			t.Errorf("mode %v: %v", mode, err)
		}
		if err := CheckCacheDir(dir); err == nil || !strings.Contains(err.Error(), dir) {
			t.Errorf("CheckCacheDir, mode %v: %v", mode, err)
		}
	}
	dir := filepath.Join(base, "ok")
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660} {
		key := filepath.Join(base, "key"+mode.String())
		if err := os.WriteFile(key, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(key, mode); err != nil {
			t.Fatal(err)
		}
		_, err := NewRuntime(ctx, RuntimeOptions{CacheDir: dir, CacheKeyFile: key})
		if err == nil || !strings.Contains(err.Error(), key+" is accessible to group or others") {
			t.Errorf("key mode %v: %v", mode, err)
		}
	}
	_, err := NewRuntime(ctx, RuntimeOptions{CacheDir: dir, CacheKeyFile: filepath.Join(dir, "k")})
	if err == nil || !strings.Contains(err.Error(), "is inside the cache directory") {
		t.Errorf("key inside the cache: %v", err)
	}
	short := filepath.Join(base, "short.key")
	if err := os.WriteFile(short, []byte("abcd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewRuntime(ctx, RuntimeOptions{CacheDir: dir, CacheKeyFile: short}); err == nil || !strings.Contains(err.Error(), short) {
		t.Errorf("short key: %v", err)
	}
}
