package hot

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/banditstream/banditstream/store/state"
	"github.com/redis/go-redis/v9"
)

// touchScript marks a hot session active and returns its user-arm counts;
// it returns {'0'} for a user who is not hot (nothing is created). A later
// offload of the session then sees a changed last activity and keeps it.
// KEYS: m, s. ARGV: now (ms).
var touchScript = script("touch.lua")

// TouchSessions reads the session state of users in one round trip and
// records their activity at nowMs, so a user who keeps asking for rankings
// stays hot. A user not hot gets Loaded false.
func (h *Hot) TouchSessions(ctx context.Context, users []string, nowMs int64) ([]state.SessionStats, error) {
	k := h.keys
	cmds := make([]*redis.Cmd, len(users))
	err := h.withScripts(ctx, func() error {
		pipe := h.rdb.Pipeline()
		for i, u := range users {
			cmds[i] = touchScript.Run(ctx, pipe, []string{k.userKey(u, "m"), k.userKey(u, "s")}, nowMs)
			// The activity index is how the sweeper finds the session; an
			// entry for a user not hot is dropped by the sweeper's next pass.
			pipe.ZAddGT(ctx, k.ActivityKey(u), redis.Z{Score: float64(nowMs), Member: u})
		}
		_, err := pipe.Exec(ctx)
		return err
	}, touchScript)
	if IsFull(err) {
		// A full Redis refuses the touches: scoring goes on from reads,
		// and the users' activity is recorded by their next requests.
		return h.readSessions(ctx, users)
	}
	if err != nil {
		return nil, fmt.Errorf("reading sessions: %w", err)
	}
	out := make([]state.SessionStats, len(users))
	for i, c := range cmds {
		vals, err := c.StringSlice()
		if err != nil {
			return nil, fmt.Errorf("reading session of %s: %w", users[i], err)
		}
		if len(vals) == 0 || vals[0] != "1" {
			continue
		}
		out[i].Loaded = true
		if out[i].Arms, err = parseUserArms(vals[1:]); err != nil {
			return nil, fmt.Errorf("session of %s: %w", users[i], err)
		}
	}
	return out, nil
}

// readSessions is TouchSessions without the touch: reads only.
func (h *Hot) readSessions(ctx context.Context, users []string) ([]state.SessionStats, error) {
	k := h.keys
	pipe := h.rdb.Pipeline()
	loaded := make([]*redis.StringCmd, len(users))
	counts := make([]*redis.MapStringStringCmd, len(users))
	for i, u := range users {
		loaded[i] = pipe.HGet(ctx, k.userKey(u, "m"), "l")
		counts[i] = pipe.HGetAll(ctx, k.userKey(u, "s"))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("reading sessions: %w", err)
	}
	out := make([]state.SessionStats, len(users))
	for i := range users {
		if loaded[i].Val() != "1" {
			continue
		}
		flat := make([]string, 0, 2*len(counts[i].Val()))
		for f, v := range counts[i].Val() {
			flat = append(flat, f, v)
		}
		arms, err := parseUserArms(flat)
		if err != nil {
			return nil, fmt.Errorf("session of %s: %w", users[i], err)
		}
		out[i] = state.SessionStats{Loaded: true, Arms: arms}
	}
	return out, nil
}

// IsFull reports an error of a Redis at its maxmemory with a policy that
// evicts nothing (noeviction, the only one that loses no state): it refuses
// every write until memory frees, and a retry later succeeds.
func IsFull(err error) bool { return err != nil && redis.HasErrorPrefix(err, "OOM") }

// refused marks the errors the stages act on, in the terms they speak: a
// full Redis (state.ErrHotFull) and a refusal no retry changes
// (state.ErrRefused).
func refused(err error) error {
	switch {
	case IsFull(err):
		return fmt.Errorf("%w: %w", state.ErrHotFull, err)
	case isPermanent(err):
		return fmt.Errorf("%w: %w", state.ErrRefused, err)
	}
	return err
}

// isPermanent reports a Redis server's refusal that a retry cannot change:
// WRONGTYPE (a key of another kind where a user's state or an arm should
// be), CROSSSLOT, and a script failing on what its keys hold (a Lua
// runtime error). Everything else is taken as transient: a connection's or
// a timeout's error (no server reply at all), a server loading, busy,
// failing over, full or moving slots, and the deployment's own errors (no
// permission, too many clients), which an operator fixes for every record
// at once.
func isPermanent(err error) bool {
	var rerr redis.Error
	if errors.Is(err, redis.Nil) || !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	return strings.HasPrefix(msg, "WRONGTYPE") || strings.HasPrefix(msg, "CROSSSLOT") ||
		strings.HasPrefix(msg, "ERR user_script:") || strings.HasPrefix(msg, "ERR Error running script")
}

// withScripts runs a pipeline of scripts once more after loading them when
// the server's script cache is empty (after a restart, EVALSHA in a
// pipeline cannot fall back to EVAL). Every script here is safe to run
// twice: each checks a watermark, a version or a token.
func (h *Hot) withScripts(ctx context.Context, run func() error, scripts ...*redis.Script) error {
	err := run()
	if err == nil || !redis.HasErrorPrefix(err, "NOSCRIPT") {
		return err
	}
	for _, s := range scripts {
		if err := s.Load(ctx, h.rdb).Err(); err != nil {
			return err
		}
	}
	return run()
}

// parseUserArms reads the user-arm hash's field/value pairs (see
// userArmField) into counts per arm.
func parseUserArms(flat []string) (map[state.Arm]state.Counts, error) {
	if len(flat) == 0 {
		return nil, nil
	}
	byArm, err := parseUserArmFields(flat)
	if err != nil {
		return nil, err
	}
	arms := make(map[state.Arm]state.Counts, len(byArm))
	for arm, c := range byArm {
		ctx, item, ok := strings.Cut(arm, "\x1f")
		if !ok {
			return nil, fmt.Errorf("store: user-arm field of %q has no item", arm)
		}
		arms[state.Arm{Context: ctx, Item: item}] = c
	}
	return arms, nil
}
