package hot_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/banditstream/banditstream/store/hot"
	"github.com/banditstream/banditstream/store/state"
)

// The session-load lock is renewed while its loader lives; a loader whose
// lock expired while it stalled cannot install what it read: another
// loader's session, offloaded since, would be overwritten by an older
// version with older watermarks.
func TestInstallIsFencedByTheLoadLock(t *testing.T) {
	ctx := context.Background()
	th := newTestHot(t)
	h, epoch := th.h, th.epoch
	const user = "u-1"
	stale, ok, err := h.LockSession(ctx, user, 100*time.Millisecond)
	if !ok || err != nil {
		t.Fatalf("first lock: %v, %v", ok, err)
	}
	// A live loader's lock is renewed past its TTL ...
	time.Sleep(300 * time.Millisecond)
	if _, ok, err := h.LockSession(ctx, user, 10*time.Second); ok || err != nil {
		t.Fatalf("the lock of a live loader expired: %v, %v", ok, err)
	}
	// ... and the loader that stalls loses it.
	hot.StallLoad(h, stale)
	time.Sleep(300 * time.Millisecond)
	fresh, ok, err := h.LockSession(ctx, user, 10*time.Second)
	if !ok || err != nil {
		t.Fatalf("second lock: %v, %v", ok, err)
	}
	newer := state.UserState{UserID: user, Version: 7, Watermarks: map[string]int64{"ev/0": 70}}
	if installed, err := h.InstallSession(ctx, fresh, epoch, newer, nil, time.Now().UnixMilli()); !installed || err != nil {
		t.Fatalf("the holder's install: %v, %v", installed, err)
	}
	// The session is offloaded and evicted; then the stalled loader wakes.
	s, ok, err := h.ReadSession(ctx, user)
	if !ok || err != nil {
		t.Fatalf("reading the session: %v, %v", ok, err)
	}
	if evicted, err := h.EvictSession(ctx, s); !evicted || err != nil {
		t.Fatalf("evicting the session: %v, %v", evicted, err)
	}
	older := state.UserState{UserID: user, Version: 3, Watermarks: map[string]int64{"ev/0": 30}}
	installed, err := h.InstallSession(ctx, stale, epoch, older, nil, time.Now().UnixMilli())
	if installed || !errors.Is(err, state.ErrLockLost) {
		t.Fatalf("the stalled loader's install: installed %v, %v; want refused with ErrLockLost", installed, err)
	}
	if loaded, err := h.SessionsLoaded(ctx, []string{user}); err != nil || loaded[0] {
		t.Fatalf("a session is installed after the refused install: %v, %v", loaded, err)
	}
	if n := hot.LoadsHeld(h); n != 0 {
		t.Fatalf("%d session-load locks still renewed after their installs", n)
	}
}
