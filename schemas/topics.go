package schemas

// The pipeline's default topic names, defined once: the daemons' flags,
// the library defaults and the stack's topic list read them from here.
const (
	// TopicInteractions carries interaction events (Interaction).
	TopicInteractions = "interactions"
	// TopicScoreRequests carries score requests (ScoreRequest).
	TopicScoreRequests = "score-requests"
	// TopicScoreResults receives the responses (ScoreResponse) to requests
	// that name no reply topic.
	TopicScoreResults = "score-results"
	// DeadLetterSuffix is appended to a topic's name to name its
	// dead-letter topic.
	DeadLetterSuffix = ".dlq"
)

// DeadLetterTopic returns the dead-letter topic of topic.
func DeadLetterTopic(topic string) string { return topic + DeadLetterSuffix }
