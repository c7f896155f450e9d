"""Produces and reads the pipeline's records with confluent-kafka's own
serializers, as a producer of another ecosystem would.

    serializers.py produce DESCRIPTOR BROKERS REGISTRY < records.jsonl
    serializers.py consume DESCRIPTOR BROKERS TOPIC COUNT

DESCRIPTOR is the project's .proto as a serialized FileDescriptorProto.
Each input line is {"topic", "key", "form", "type", "message"}: message is
the record in protobuf's canonical JSON, written in form, one of
protobuf, framed-protobuf (ProtobufSerializer), framed-json
(JSONSerializer), protojson (json_format.MessageToJson) or json (the
simple form, given as "simple"). No content-type header is sent.

consume reads COUNT values from partition 0 of TOPIC with
ProtobufDeserializer and prints each ScoreResponse as canonical JSON.
"""

import json
import sys

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

# JSON Schemas of the simple form, as a JSON Schema producer registers.
JSON_SCHEMAS = {
    "Interaction": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Interaction",
        "type": "object",
        "properties": {
            "event_id": {"type": "string"},
            "user_id": {"type": "string"},
            "item_id": {"type": "string"},
            "context": {"type": "string"},
            "type": {"enum": ["impression", "click", "wishlist", "add_to_cart", "order"]},
            "event_time_ms": {"type": "integer"},
        },
        "required": ["event_id", "user_id", "item_id", "type", "event_time_ms"],
    },
    "ScoreRequest": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "ScoreRequest",
        "type": "object",
        "properties": {
            "request_id": {"type": "string"},
            "user_id": {"type": "string"},
            "context": {"type": "string"},
            "candidates": {"type": "array", "items": {"type": "string"}},
            "k": {"type": "integer"},
            "mode": {"enum": ["thompson", "mean"]},
        },
        "required": ["request_id", "user_id", "candidates", "k"],
    },
}


def message_classes(path):
    with open(path, "rb") as f:
        fdp = descriptor_pb2.FileDescriptorProto.FromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return lambda name: message_factory.GetMessageClass(pool.FindMessageTypeByName(fdp.package + "." + name))


def produce(descriptor, brokers, registry_url):
    cls = message_classes(descriptor)
    registry = SchemaRegistryClient({"url": registry_url})
    serializers = {}
    producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "linger.ms": 5})
    failures = []

    def delivered(err, _msg):
        if err is not None:
            failures.append(str(err))

    for line in sys.stdin:
        rec = json.loads(line)
        typ, form, topic = rec["type"], rec["form"], rec["topic"]
        msg = json_format.Parse(rec["message"], cls(typ)())
        ctx = SerializationContext(topic, MessageField.VALUE)
        if form == "protobuf":
            value = msg.SerializeToString()
        elif form == "protojson":
            value = json_format.MessageToJson(msg).encode()
        elif form == "json":
            value = json.dumps(rec["simple"]).encode()
        elif form == "framed-protobuf":
            if ("pb", typ) not in serializers:
                serializers[("pb", typ)] = ProtobufSerializer(cls(typ), registry, {"use.deprecated.format": False})
            value = serializers[("pb", typ)](msg, ctx)
        elif form == "framed-json":
            if ("json", typ) not in serializers:
                serializers[("json", typ)] = JSONSerializer(json.dumps(JSON_SCHEMAS[typ]), registry)
            value = serializers[("json", typ)](rec["simple"], ctx)
        else:
            raise SystemExit("unknown form " + form)
        producer.produce(topic, key=rec["key"].encode(), value=value, on_delivery=delivered)
        producer.poll(0)
    if producer.flush(60) != 0 or failures:
        raise SystemExit("not delivered: %s" % (failures or "flush timed out"))


def consume(descriptor, brokers, topic, count):
    cls = message_classes(descriptor)
    deserialize = ProtobufDeserializer(cls("ScoreResponse"), {"use.deprecated.format": False})
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "serializers-test", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen = 0
    while seen < count:
        m = consumer.poll(30)
        if m is None:
            raise SystemExit("no message in 30s after %d" % seen)
        if m.error():
            raise SystemExit(str(m.error()))
        if not m.value() or m.value()[0] != 0:
            continue  # an unframed value: JSON or plain protobuf
        resp = deserialize(m.value(), SerializationContext(topic, MessageField.VALUE))
        print(json_format.MessageToJson(resp, indent=None), flush=True)
        seen += 1
    consumer.close()


if __name__ == "__main__":
    if sys.argv[1] == "produce":
        produce(*sys.argv[2:5])
    else:
        consume(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
