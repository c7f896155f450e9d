//go:build !linux

package armcache

// adviseHugePages is a no-op where transparent huge pages do not exist.
func adviseHugePages[T any]([]T) {}
