package pluginspec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// CheckCacheDir reports whether dir may hold compiled code: when it
// exists, it must be a directory owned by the host's user (or root) and
// writable by nobody else. A missing directory passes (NewRuntime creates
// it with mode 0700). The error names dir.
func CheckCacheDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if m := fi.Mode().Perm(); permBits && m&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %04o): its files become native code in the host; chmod go-w it or choose a private directory", dir, m)
	}
	return checkOwner(dir, fi)
}

// CheckCacheKeyFile reports whether path may hold the compilation cache
// key: when it exists, it must be a regular file owned by the host's user
// (or root) that neither group nor others can read or write. A missing
// file passes (NewRuntime creates it with mode 0600). The error names path.
func CheckCacheKeyFile(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return CheckKeyFileInfo(path, fi)
}

// CheckKeyFileInfo is CheckCacheKeyFile for a file already stat-ed.
func CheckKeyFileInfo(path string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if m := fi.Mode().Perm(); permBits && m&0o077 != 0 {
		return fmt.Errorf("%s is accessible to group or others (mode %04o): whoever reads it can seal compiled code the host will run; chmod 600 it", path, m)
	}
	return checkOwner(path, fi)
}

func checkOwner(path string, fi fs.FileInfo) error {
	uid, ok := fileOwner(fi)
	if !ok {
		return nil
	}
	if me := os.Geteuid(); uid != me && uid != 0 {
		return fmt.Errorf("%s is owned by uid %d, not by the host's uid %d (or root)", path, uid, me)
	}
	return nil
}

// DefaultCacheKeyFile is the key file used when RuntimeOptions.CacheKeyFile
// is empty: a sibling of the cache directory, "<dir>.key".
func DefaultCacheKeyFile(cacheDir string) string {
	if cacheDir == "" {
		return ""
	}
	return filepath.Clean(cacheDir) + ".key"
}

// ModeBitsEnforced reports whether the system enforces the group and other
// mode bits these checks read (Unix).
const ModeBitsEnforced = permBits
