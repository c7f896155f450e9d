package armcache

import (
	"syscall"
	"unsafe"
)

// adviseHugePages asks the kernel to back a large array with transparent
// huge pages where it allows them only on request ("madvise" mode): random
// reads over hundreds of megabytes then miss the TLB far less. It is
// advice; a kernel that declines changes nothing.
func adviseHugePages[T any](s []T) {
	const page = 4096
	n := uintptr(len(s)) * unsafe.Sizeof(*new(T))
	if n < 4<<20 {
		return
	}
	p := unsafe.Pointer(unsafe.SliceData(s))
	start := uintptr(p)
	off := (start+page-1)&^(page-1) - start
	b := unsafe.Slice((*byte)(unsafe.Add(p, off)), n-off)
	_ = syscall.Madvise(b, 14) // MADV_HUGEPAGE
}
