package plugin

// The on-disk compilation cache (RuntimeOptions.CacheDir).
//
// wazero's file cache stores the machine code it generated for a module
// and, on a later CompileModule of the same bytes, maps that code
// executable after a CRC check only: whoever can change a file of the
// cache chooses the native code the host runs, and the sha256 pin and
// the guild signature, checked on the module bytes, never see it. So
// wazero never reads CacheDir. Each entry there is sealed with a keyed
// digest:
//
//	"authority-plugin-cache-v1\n" || HMAC-SHA-256(key, M) || code
//	M = "authority-plugin-cache-v1\n" || relative path || "\n" || code
//
// where the relative path is wazero's "wazero-<version>-<arch>-<os>/<key>"
// (its key is derived from the module bytes and the CPU features), so an
// authentic entry cannot be moved under another module's name. The key
// (32 random bytes, hex) lives in a file outside CacheDir
// (RuntimeOptions.CacheKeyFile, mode 0600, created when missing).
//
// NewRuntime creates a private directory (os.MkdirTemp: mode 0700, a
// fresh random name per runtime) and points wazero at it. Just before
// wazero compiles a module, the entry the cache index names for that
// module (by the sha256 of the rewritten bytes) is copied into it if its
// digest verifies, computing the digest over the very bytes it writes (no
// window between check and use); an entry that does not verify is removed
// from CacheDir, logged (authority.plugin.cache.discarded) and counted
// (CacheStats.Discarded), never run, and the module is compiled again from
// its verified bytes. Only entries of modules being compiled are read, so
// a start costs what the configured modules need, whatever else the
// directory holds. After the set is loaded (NewManager) and at Close,
// entries wazero wrote into the private directory are sealed and stored
// back, the index (itself sealed) is rewritten, and entries no index
// record names, or unused for cacheRetention, are removed; Close then
// removes the private directory.
//
// The reasons, and what the cache is trusted for, are in
// abi/RATIONALE-plugins.md ("Compilation cache").

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"stellaops.org/authority/host/pluginspec"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
)

const (
	cacheMagic = "authority-plugin-cache-v1\n"
	// maxCacheEntryBytes bounds one entry (a Go guest's code is a few MiB):
	// a planted huge file is refused instead of copied.
	maxCacheEntryBytes = 256 << 20
	cacheKeyBytes      = 32
	// cacheRetention: an entry no module used for that long is removed.
	cacheRetention = 30 * 24 * time.Hour
	indexMagic     = "authority-plugin-cache-index-v1\n"
)

// indexRecord names the entry of one module (by the sha256 of the bytes
// wazero compiles) and when a runtime last used it.
type indexRecord struct {
	entry string
	used  int64 // unix seconds
}

// CacheStats counts what a Runtime did with RuntimeOptions.CacheDir.
type CacheStats struct {
	// Verified entries had a valid keyed digest and were offered to
	// wazero: a module whose entry verified is not compiled again.
	Verified int
	// Discarded entries failed verification (changed after the host wrote
	// them, sealed with another key, not sealed at all, unreadable): each
	// was removed and logged, and never ran.
	Discarded int
	// Written entries were compiled by this runtime, sealed and stored.
	Written int
}

// CacheStats returns the runtime's compilation cache counters (zero
// without RuntimeOptions.CacheDir).
func (r *Runtime) CacheStats() CacheStats {
	if r.disk == nil {
		return CacheStats{}
	}
	r.disk.mu.Lock()
	defer r.disk.mu.Unlock()
	return r.disk.stats
}

// saveCache stores the entries compiled since the last save into
// CacheDir (see diskCache.save). NewManager calls it once the set is
// loaded, so that a host killed before Close keeps them.
func (r *Runtime) saveCache() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.disk != nil && !r.closed {
		r.disk.save()
	}
}

// insideDir reports whether path is dir or lies below it.
func insideDir(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// diskCache is a Runtime's view of RuntimeOptions.CacheDir.
type diskCache struct {
	dir     string // persistent: RuntimeOptions.CacheDir
	private string // what wazero reads; removed at close
	sub     string // wazero's per-version subdirectory name
	key     []byte
	log     *slog.Logger

	mu    sync.Mutex
	known map[string]fs.FileInfo // entry name → private file as copied in or stored back
	index map[string]indexRecord // module tag → its entry
	used  map[string]bool        // module tags compiled by this runtime
	stats CacheStats
}

// openDiskCache checks and prepares opts.CacheDir, its key and a private
// directory holding the entries that verify, and returns the wazero
// compilation cache on that private directory.
func openDiskCache(opts RuntimeOptions) (*diskCache, wazero.CompilationCache, error) {
	fail := func(err error) (*diskCache, wazero.CompilationCache, error) {
		return nil, nil, fmt.Errorf("plugin: compilation cache: %w", err)
	}
	dir, err := filepath.Abs(opts.CacheDir)
	if err != nil {
		return fail(err)
	}
	keyFile := opts.CacheKeyFile
	if keyFile == "" {
		keyFile = DefaultCacheKeyFile(dir)
	}
	if keyFile, err = filepath.Abs(keyFile); err != nil {
		return fail(err)
	}
	if insideDir(dir, keyFile) {
		return fail(fmt.Errorf("key file %s is inside the cache directory %s; keep it outside", keyFile, dir))
	}
	if err := CheckCacheDir(dir); err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	if err := CheckCacheDir(dir); err != nil {
		return fail(err)
	}
	key, err := loadCacheKey(keyFile)
	if err != nil {
		return fail(err)
	}
	private, err := os.MkdirTemp("", "authority-plugin-cache-")
	if err != nil {
		return fail(err)
	}
	d := &diskCache{dir: dir, private: private, key: key, log: opts.Logger, known: map[string]fs.FileInfo{},
		index: map[string]indexRecord{}, used: map[string]bool{}}
	c, err := wazero.NewCompilationCacheWithDir(private)
	if err == nil {
		d.sub, err = wazeroSubdir(private)
	}
	if err != nil {
		_ = os.RemoveAll(private)
		return fail(err)
	}
	d.load()
	return d, c, nil
}

// wazeroSubdir returns the one directory wazero created in private
// ("wazero-<version>-<arch>-<os>"): only that subdirectory of CacheDir is
// copied, entries of other wazero versions could never be read.
func wazeroSubdir(private string) (string, error) {
	ents, err := os.ReadDir(private)
	if err != nil {
		return "", err
	}
	if len(ents) != 1 || !ents[0].IsDir() {
		return "", fmt.Errorf("unexpected wazero cache layout in %s", private)
	}
	return ents[0].Name(), nil
}

// isEntryName reports whether name is a wazero cache entry (64 lower-case
// hex digits); wazero's own temporary files and anything else are ignored.
func isEntryName(name string) bool {
	if len(name) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (d *diskCache) newMAC(name string) hash.Hash {
	m := hmac.New(sha256.New, d.key)
	io.WriteString(m, cacheMagic+d.sub+"/"+name+"\n")
	return m
}

// load removes interrupted stores and reads the index; entries are copied
// in only when their module is compiled (before).
func (d *diskCache) load() {
	src := filepath.Join(d.dir, d.sub)
	ents, err := os.ReadDir(src)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			d.log.Warn("authority.plugin.cache.unreadable", "dir", src, "error", err.Error())
		}
		return
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-") {
			// An interrupted store; a recent one may be another runtime's
			// store in progress (a reload, a second process).
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Hour {
				_ = os.Remove(filepath.Join(src, name))
			}
		}
	}
	d.readIndex()
}

func (d *diskCache) indexPath() string { return filepath.Join(d.dir, d.sub+".index") }

// indexMAC is the keyed digest of an index body.
func (d *diskCache) indexMAC(body []byte) []byte {
	m := hmac.New(sha256.New, d.key)
	io.WriteString(m, indexMagic+d.sub+"\n")
	m.Write(body)
	return m.Sum(nil)
}

// readIndex loads the sealed index ("magic, hex digest, then one
// "tag entry unix-seconds" line per module"); an index that does not
// verify is discarded like an entry (its entries then go unused and age out).
func (d *diskCache) readIndex() {
	path := d.indexPath()
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	head := len(indexMagic) + 2*sha256.Size + 1
	if err != nil || len(raw) < head || string(raw[:len(indexMagic)]) != indexMagic {
		d.discardIndex(path, "not sealed by this host")
		return
	}
	want, err := hex.DecodeString(string(raw[len(indexMagic) : head-1]))
	body := raw[head:]
	if err != nil || !hmac.Equal(want, d.indexMAC(body)) {
		d.discardIndex(path, "keyed digest does not verify")
		return
	}
	for _, line := range strings.Split(string(body), "\n") {
		var rec indexRecord
		var tag string
		if _, err := fmt.Sscanf(line, "%s %s %d", &tag, &rec.entry, &rec.used); err == nil && isEntryName(rec.entry) {
			d.index[tag] = rec
		}
	}
}

func (d *diskCache) discardIndex(path, reason string) {
	d.log.Warn("authority.plugin.cache.discarded", "path", path, "reason", reason)
	d.stats.Discarded++
	_ = os.Remove(path)
}

// before offers wazero the entry of the module whose compiled bytes have
// digest tag, when the index names one and it verifies.
func (d *diskCache) before(tag string) {
	d.mu.Lock()
	rec, ok := d.index[tag]
	_, have := d.known[rec.entry]
	d.used[tag] = true
	d.mu.Unlock()
	if !ok || have {
		return
	}
	path := filepath.Join(d.dir, d.sub, rec.entry)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return
	}
	if fi, reason := d.copyIn(rec.entry, path); reason != "" {
		d.discard(path, fi, reason)
	}
}

// after learns which entry wazero wrote for tag (compilations are
// serialized by the Runtime, so a new file is this module's).
func (d *diskCache) after(tag string) {
	ents, err := os.ReadDir(filepath.Join(d.private, d.sub))
	if err != nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range ents {
		name := e.Name()
		if !isEntryName(name) {
			continue
		}
		if _, seen := d.known[name]; seen {
			continue
		}
		taken := false
		for _, rec := range d.index {
			if rec.entry == name {
				taken = true
				break
			}
		}
		if !taken {
			d.index[tag] = indexRecord{entry: name, used: time.Now().Unix()}
		}
	}
}

// copyIn copies the entry at path into the private directory if its
// digest verifies, and returns the file examined and why it was refused.
func (d *diskCache) copyIn(name, path string) (fs.FileInfo, string) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, "unreadable: " + err.Error()
	}
	if !fi.Mode().IsRegular() {
		return fi, "not a regular file"
	}
	f, err := os.Open(path)
	if err != nil {
		return fi, "unreadable: " + err.Error()
	}
	defer f.Close()
	if ofi, err := f.Stat(); err != nil || !os.SameFile(fi, ofi) {
		return fi, "replaced while being read"
	}
	head := make([]byte, len(cacheMagic)+sha256.Size)
	if _, err := io.ReadFull(f, head); err != nil || string(head[:len(cacheMagic)]) != cacheMagic {
		return fi, "not sealed by this host (no authority-plugin-cache-v1 header)"
	}
	dst := filepath.Join(d.private, d.sub)
	tmp, err := os.CreateTemp(dst, "."+name+".tmp-")
	if err != nil {
		return fi, "cannot copy: " + err.Error()
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	mac := d.newMAC(name)
	n, err := io.Copy(io.MultiWriter(tmp, mac), io.LimitReader(f, maxCacheEntryBytes+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil:
		return fi, "unreadable: " + err.Error()
	case n > maxCacheEntryBytes:
		return fi, fmt.Sprintf("larger than %d bytes", maxCacheEntryBytes)
	case !hmac.Equal(mac.Sum(nil), head[len(cacheMagic):]):
		return fi, "keyed digest does not verify (changed after the host wrote it, or sealed with another key)"
	}
	out := filepath.Join(dst, name)
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fi, "cannot copy: " + err.Error()
	}
	pfi, err := os.Lstat(out)
	if err != nil {
		return fi, "cannot copy: " + err.Error()
	}
	d.mu.Lock()
	d.known[name] = pfi
	d.stats.Verified++
	d.mu.Unlock()
	return fi, ""
}

// discard logs and counts a refused entry and removes it from CacheDir
// (unless it was replaced meanwhile, by another runtime storing a fresh
// entry).
func (d *diskCache) discard(path string, fi fs.FileInfo, reason string) {
	d.log.Warn("authority.plugin.cache.discarded", "path", path, "reason", reason)
	d.mu.Lock()
	d.stats.Discarded++
	d.mu.Unlock()
	if now, err := os.Lstat(path); err == nil && fi != nil && os.SameFile(fi, now) {
		_ = os.Remove(path)
	}
}

// save seals and stores into CacheDir every entry of the private directory
// that wazero wrote since it was copied in or last stored (wazero writes a
// new file, never edits one in place). Failures are logged: the code is
// compiled again on the next start.
func (d *diskCache) save() {
	src := filepath.Join(d.private, d.sub)
	ents, err := os.ReadDir(src)
	if err != nil {
		d.log.Warn("authority.plugin.cache.store_failed", "dir", src, "error", err.Error())
		return
	}
	for _, e := range ents {
		name := e.Name()
		if !isEntryName(name) {
			continue
		}
		fi, err := os.Lstat(filepath.Join(src, name))
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		d.mu.Lock()
		prev, ok := d.known[name]
		d.mu.Unlock()
		if ok && os.SameFile(prev, fi) && prev.Size() == fi.Size() && prev.ModTime().Equal(fi.ModTime()) {
			continue
		}
		if err := d.store(name, filepath.Join(src, name)); err != nil {
			d.log.Warn("authority.plugin.cache.store_failed", "path", filepath.Join(d.dir, d.sub, name), "error", err.Error())
			continue
		}
		d.mu.Lock()
		d.known[name] = fi
		d.stats.Written++
		d.mu.Unlock()
	}
	d.writeIndex()
}

// writeIndex rewrites the sealed index: the modules this runtime compiled
// (used now) and the others still recent and present, then removes the
// entries it no longer names (unless written within the hour: another
// runtime's store in progress). Failures are logged; the cost is at most a
// recompilation.
func (d *diskCache) writeIndex() {
	now := time.Now()
	sub := filepath.Join(d.dir, d.sub)
	d.mu.Lock()
	keep := map[string]bool{}
	var body strings.Builder
	tags := make([]string, 0, len(d.index))
	for tag := range d.index {
		tags = append(tags, tag)
	}
	sort.Strings(tags)
	for _, tag := range tags {
		rec := d.index[tag]
		if d.used[tag] {
			rec.used = now.Unix()
			d.index[tag] = rec
		}
		if now.Sub(time.Unix(rec.used, 0)) > cacheRetention {
			delete(d.index, tag)
			continue
		}
		if _, err := os.Lstat(filepath.Join(sub, rec.entry)); err != nil {
			delete(d.index, tag)
			continue
		}
		keep[rec.entry] = true
		fmt.Fprintf(&body, "%s %s %d\n", tag, rec.entry, rec.used)
	}
	d.mu.Unlock()
	b := []byte(body.String())
	out := []byte(indexMagic + hex.EncodeToString(d.indexMAC(b)) + "\n")
	out = append(out, b...)
	if err := writeFileAtomic(d.indexPath(), out); err != nil {
		d.log.Warn("authority.plugin.cache.store_failed", "path", d.indexPath(), "error", err.Error())
		return
	}
	ents, err := os.ReadDir(sub)
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		if !isEntryName(name) || keep[name] {
			continue
		}
		if fi, err := e.Info(); err == nil && now.Sub(fi.ModTime()) > time.Hour {
			_ = os.Remove(filepath.Join(sub, name))
			d.log.Debug("authority.plugin.cache.pruned", "path", filepath.Join(sub, name))
		}
	}
}

// writeFileAtomic writes b to path through a temporary file and a rename.
func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// store seals the private entry at src into CacheDir (temporary file,
// fsync, rename: readers see the old entry or the whole new one).
func (d *diskCache) store(name, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	dst := filepath.Join(d.dir, d.sub)
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	out, err := os.CreateTemp(dst, "."+name+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name()) // a no-op once renamed
	err = d.seal(out, name, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(out.Name(), filepath.Join(dst, name))
}

// seal writes the header, the keyed digest and the code read from in.
func (d *diskCache) seal(out *os.File, name string, in io.Reader) error {
	head := make([]byte, len(cacheMagic)+sha256.Size)
	copy(head, cacheMagic)
	if _, err := out.Write(head); err != nil {
		return err
	}
	mac := d.newMAC(name)
	n, err := io.Copy(io.MultiWriter(out, mac), io.LimitReader(in, maxCacheEntryBytes+1))
	if err != nil {
		return err
	}
	if n > maxCacheEntryBytes {
		return fmt.Errorf("larger than %d bytes", maxCacheEntryBytes)
	}
	if _, err := out.WriteAt(mac.Sum(nil), int64(len(cacheMagic))); err != nil {
		return err
	}
	return out.Sync()
}

// close stores what is new and removes the private directory.
func (d *diskCache) close() error {
	d.save()
	return os.RemoveAll(d.private)
}

// loadCacheKey reads the key file (hex, at least 32 bytes), creating it
// with a random key when missing. A file others can read or write is
// refused. Losing the key costs one recompilation: every entry is then
// discarded.
func loadCacheKey(path string) ([]byte, error) {
	for range 2 {
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			key, err := createCacheKey(path)
			if errors.Is(err, fs.ErrExist) {
				continue // another process created it first: read theirs
			}
			return key, err
		}
		if err != nil {
			return nil, err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if err := pluginspec.CheckKeyFileInfo(path, fi); err != nil {
			return nil, err
		}
		raw, err := io.ReadAll(io.LimitReader(f, 4096))
		if err != nil {
			return nil, err
		}
		key, err := hex.DecodeString(strings.TrimSpace(string(raw)))
		if err != nil || len(key) < cacheKeyBytes {
			return nil, fmt.Errorf("%s: the cache key must be at least %d bytes, hex-encoded", path, cacheKeyBytes)
		}
		return key, nil
	}
	return nil, fmt.Errorf("%s: created and removed concurrently", path)
}

// createCacheKey writes a fresh random key to path, failing with
// fs.ErrExist when path appeared meanwhile (the file is linked into place
// complete, never visible half-written).
func createCacheKey(path string) ([]byte, error) {
	key := make([]byte, cacheKeyBytes)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(key) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return nil, err
	}
	return key, nil
}
