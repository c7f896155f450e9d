package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// SessionStats is what the scorer reads of a user: whether the session is
// hot and, if it is, the user's own counts per arm.
type SessionStats struct {
	Loaded bool
	Arms   map[Arm]Counts // nil when not loaded or empty
}

// touchScript marks a hot session active and returns its user-arm counts;
// it returns {'0'} for a user who is not hot (nothing is created). A later
// offload of the session then sees a changed last activity and keeps it.
// KEYS: m, s. ARGV: now (ms).
var touchScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'l') ~= '1' then return {'0'} end
redis.call('HSET', KEYS[1], 'seen', ARGV[1])
local out = redis.call('HGETALL', KEYS[2])
table.insert(out, 1, '1')
return out
`)

// Sessions reads the session state of users in one round trip and records
// their activity, so a user who keeps asking for rankings stays hot. A user
// not hot gets Loaded false: start the session with EnsureLoaded.
func (t *Tier) Sessions(ctx context.Context, users []string) ([]SessionStats, error) {
	k := t.hot.keys
	now := nowMs()
	cmds := make([]*redis.Cmd, len(users))
	run := func() error {
		pipe := t.hot.rdb.Pipeline()
		for i, u := range users {
			cmds[i] = touchScript.Run(ctx, pipe, []string{k.userKey(u, "m"), k.userKey(u, "s")}, now)
			// The activity index is how the sweeper finds the session; an
			// entry for a user not hot is dropped by the sweeper's next pass.
			pipe.ZAddGT(ctx, k.ActivityKey(u), redis.Z{Score: float64(now), Member: u})
		}
		_, err := pipe.Exec(ctx)
		return err
	}
	err := run()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if err = touchScript.Load(ctx, t.hot.rdb).Err(); err == nil {
			err = run()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reading sessions: %w", err)
	}
	out := make([]SessionStats, len(users))
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

// parseUserArms reads field/value pairs "<context>\x1f<item>\x1f<type>" →
// count.
func parseUserArms(flat []string) (map[Arm]Counts, error) {
	if len(flat) == 0 {
		return nil, nil
	}
	arms := make(map[Arm]Counts, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		arm, ty, n, err := parseUserArmField(flat[i], flat[i+1])
		if err != nil {
			return nil, err
		}
		ctx, item, ok := strings.Cut(arm, "\x1f")
		if !ok {
			return nil, fmt.Errorf("store: user-arm field %q has no item", flat[i])
		}
		a := Arm{Context: ctx, Item: item}
		c := arms[a]
		c.ByType[ty] = n
		arms[a] = c
	}
	return arms, nil
}
