// Integration tests of the local stack: each real server, reached through
// the client libraries the pipeline uses (segmentio/kafka-go, gocql with
// gocqlx, go-redis), does what the pipeline relies on.
package local_test
