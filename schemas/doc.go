// Package schemas is where every message of the pipeline is defined: the
// Interaction events that producers publish and ingest counts, the
// ScoreRequest that clients send to the scorer, and the ScoreResponse it
// publishes back. Everything else imports it; it imports nothing of the
// project.
//
// The wire format is Protocol Buffers (proto/banditstream/v1, generated into
// schemas/pb); a JSON form exists for humans and shell producers. A Kafka
// header chooses the codec per message, protobuf when absent. Limits holds
// the named limits every message is checked against, and its errors name the
// field and the reason, so a dead-letter record says what was wrong.
package schemas
