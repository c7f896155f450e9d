// Package producers is the writing edge of the pipeline for applications:
// EventProducer publishes interactions, and RankClient sends score requests
// and returns their responses, read from the client's own reply topic.
//
//	applications → producers → [interactions], [score-requests]
//	[reply topic] → RankClient → applications
//
// Every write waits for acks from all in-sync replicas; nothing is
// fire-and-forget.
package producers
