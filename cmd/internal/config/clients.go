package config

import (
	"strings"

	"github.com/gocql/gocql"
	"github.com/redis/go-redis/v9"
)

// Client returns a client for the hot tier: a single server, or a Redis
// Cluster when Addr lists several nodes, comma separated.
func (r Redis) Client() redis.UniversalClient {
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:    strings.Split(r.Addr, ","),
		Username: r.Username,
		Password: r.Password,
		DB:       r.DB,
	})
}

// Cluster returns the driver configuration for the cold tier, with the
// timeouts and credentials set; the keyspace is left to the caller.
func (c CQL) Cluster() *gocql.ClusterConfig {
	cluster := gocql.NewCluster(c.Hosts...)
	cluster.Timeout = c.Timeout
	cluster.ConnectTimeout = c.Timeout
	if c.Username != "" {
		cluster.Authenticator = gocql.PasswordAuthenticator{Username: c.Username, Password: c.Password}
	}
	return cluster
}
