package config

import (
	"context"
	"fmt"
	"strings"

	"github.com/banditstream/banditstream/store/cold"
	"github.com/banditstream/banditstream/store/hot"
	"github.com/gocql/gocql"
	"github.com/redis/go-redis/v9"
)

// Client returns a client for the hot tier: a single server, or a Redis
// Cluster when Addr lists several nodes, comma separated.
func (r Redis) Client() (redis.UniversalClient, error) {
	password, err := Secret(r.Password, r.PasswordFile, "redis-password")
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
	password, err := Secret(c.Password, c.PasswordFile, "cql-password")
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

// Hot opens the hot tier: the Redis client and the arm store under keys.
// Close the client when done.
func (r Redis) Hot(keys hot.Keys) (redis.UniversalClient, *hot.Hot, error) {
	rdb, err := r.Client()
	if err != nil {
		return nil, nil, err
	}
	hot, err := hot.New(rdb, keys)
	if err != nil {
		rdb.Close()
		return nil, nil, err
	}
	return rdb, hot, nil
}

// Cold opens a session at Consistency (a CQL name such as LOCAL_QUORUM)
// and the cold tier in the keyspace; with Migrate, the keyspace (with
// Replication) and its tables are created first if missing. Close the
// session when done.
func (c CQL) Cold(ctx context.Context, namespace string, historyLoad int) (*gocql.Session, *cold.Cold, error) {
	cons, err := gocql.ParseConsistencyWrapper(c.Consistency)
	if err != nil {
		return nil, nil, fmt.Errorf("-cql-consistency: %w", err)
	}
	cluster, err := c.Cluster()
	if err != nil {
		return nil, nil, err
	}
	cluster.Consistency = cons
	session, err := cluster.CreateSession()
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to the cold tier: %w", err)
	}
	cfg := cold.Config{Keyspace: c.Keyspace, Namespace: namespace, Replication: c.Replication, HistoryLoad: historyLoad, HistoryRetention: c.HistoryRetention}
	if c.Migrate {
		if err := cold.Migrate(ctx, session, cfg); err != nil {
			session.Close()
			return nil, nil, err
		}
	}
	ct, err := cold.New(session, cfg)
	if err != nil {
		session.Close()
		return nil, nil, err
	}
	return session, ct, nil
}
