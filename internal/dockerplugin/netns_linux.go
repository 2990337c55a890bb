package dockerplugin

import "golang.org/x/sys/unix"

// IsNetNSPath reports whether path is a mounted network namespace (nsfs),
// as Docker's sandbox key is once the container's namespace is bound
// there; before, it is missing or an empty file.
func IsNetNSPath(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}
