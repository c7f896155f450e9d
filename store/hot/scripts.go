package hot

import (
	"embed"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts, one file each: every script touches keys of one hash
// tag only, so it runs on Redis, Redis Cluster and Dragonfly alike.
//
//go:embed lua/*.lua
var scripts embed.FS

func script(name string) *redis.Script {
	src, err := scripts.ReadFile("lua/" + name)
	if err != nil {
		panic("hot: missing script " + name)
	}
	return redis.NewScript(string(src))
}
