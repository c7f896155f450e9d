package config

import (
	"fmt"
	"strings"

	"github.com/gocql/gocql"
	"github.com/redis/go-redis/v9"
)

// Client returns a client for the hot tier: a single server, or a Redis
// Cluster when Addr lists several nodes, comma separated.
func (r Redis) Client() (redis.UniversalClient, error) {
	password, err := secret(r.Password, r.PasswordFile, "redis-password")
	if err != nil {
		return nil, err
	}
	tlsCfg, err := r.TLS.Config()
	if err != nil {
		return nil, fmt.Errorf("-redis-tls: %w", err)
	}
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:     strings.Split(r.Addr, ","),
		Username:  r.Username,
		Password:  password,
		DB:        r.DB,
		TLSConfig: tlsCfg,
	}), nil
}

// Cluster returns the driver configuration for the cold tier, with the
// timeouts and credentials set; the keyspace is left to the caller.
func (c CQL) Cluster() (*gocql.ClusterConfig, error) {
	password, err := secret(c.Password, c.PasswordFile, "cql-password")
	if err != nil {
		return nil, err
	}
	tlsCfg, err := c.TLS.Config()
	if err != nil {
		return nil, fmt.Errorf("-cql-tls: %w", err)
	}
	cluster := gocql.NewCluster(c.Hosts...)
	cluster.Timeout = c.Timeout
	cluster.ConnectTimeout = c.Timeout
	if c.Username != "" {
		cluster.Authenticator = gocql.PasswordAuthenticator{Username: c.Username, Password: password}
	}
	if tlsCfg != nil {
		cluster.SslOpts = &gocql.SslOptions{Config: tlsCfg, EnableHostVerification: true}
	}
	return cluster, nil
}
