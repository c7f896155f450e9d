#!/usr/bin/env bash
# The local stack on loopback, without Docker: Apache Kafka (KRaft) and Apache
# Cassandra from their Maven Central artifacts, Redis 7 from Debian's packages.
#
#   stack.sh up     [service...]   install, configure, start, wait until serving
#   stack.sh down   [service...]   stop what this script started (pid files)
#   stack.sh status                one line per service
#   stack.sh logs   [service...]   tail of each server log
#   stack.sh kill   service        SIGKILL (fault tests)
#   stack.sh stop   service        SIGTERM and wait
#   stack.sh start  service        start (again) and wait
#   stack.sh env                   the addresses, as shell assignments
#   stack.sh tls                   the PEM certificate of the TLS listeners
#
# Services: kafka, cassandra, redis. With TOPOLOGY=cluster, redis is a Redis
# Cluster of six nodes (redis-1..redis-6, 1-3 masters at first) and kafka
# three brokers (kafka-1..kafka-3); a node can be named alone (stack.sh kill
# redis-2). down with no service stops both topologies. State, data and
# logs live in $BANDITSTREAM_LOCAL_DIR (default: <repo>/.local), which git
# ignores.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=versions.env
source "$HERE/versions.env"

STATE=${BANDITSTREAM_LOCAL_DIR:-$ROOT/.local}
LIBS=$STATE/lib
BIN=$STATE/bin
REDIS_NODES=(redis-1 redis-2 redis-3 redis-4 redis-5 redis-6)
KAFKA_NODES=(kafka-1 kafka-2 kafka-3)
case $TOPOLOGY in
  single) ALL_SERVICES=(redis kafka cassandra) ;;
  cluster) ALL_SERVICES=("${REDIS_NODES[@]}" "${KAFKA_NODES[@]}" cassandra) ;;
  *) printf '[stack] error: TOPOLOGY=%s: want single or cluster\n' "$TOPOLOGY" >&2; exit 1 ;;
esac

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

svc_dir() { echo "$STATE/$1"; }
pid_file() { echo "$STATE/$1/server.pid"; }
log_file() {
  case $1 in
    kafka | kafka-*) echo "$STATE/$1/logs/server.log" ;;
    cassandra) echo "$STATE/cassandra/logs/system.log" ;;
    redis | redis-*) echo "$STATE/$1/redis.log" ;;
  esac
}
node_of() { echo "${1##*-}"; } # redis-2 -> 2
port_of() {
  case $1 in
    kafka) echo "$KAFKA_PORT" ;;
    kafka-*) echo $((KAFKA_CLUSTER_PORT + $(node_of "$1") - 1)) ;;
    cassandra) echo "$CASSANDRA_PORT" ;;
    redis) echo "$REDIS_PORT" ;;
    redis-*) echo $((REDIS_CLUSTER_PORT + $(node_of "$1") - 1)) ;;
  esac
}
join_ports() {
  # join_ports SERVICE...: 127.0.0.1:port of each, comma separated.
  local out=() s
  for s in "$@"; do out+=("127.0.0.1:$(port_of "$s")"); done
  (IFS=,; echo "${out[*]}")
}
kafka_brokers() {
  if [[ $TOPOLOGY == cluster ]]; then join_ports "${KAFKA_NODES[@]}"; else join_ports kafka; fi
}
redis_addrs() {
  if [[ $TOPOLOGY == cluster ]]; then join_ports "${REDIS_NODES[@]}"; else join_ports redis; fi
}

# A pid counts as ours only while that process still runs in the service's
# own folder (each server is launched there), so a recycled pid is never
# signalled.
running_pid() {
  local f pid
  f=$(pid_file "$1")
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ -n $pid && -d /proc/$pid ]] || return 1
  [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$(svc_dir "$1")" ]] || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

fail_with_log() {
  local svc=$1 msg=$2 lf
  lf=$(log_file "$svc")
  {
    printf '[stack] error: %s\n' "$msg"
    for f in "$lf" "$STATE/$svc/stdout.log"; do
      if [[ -s $f ]]; then
        printf '[stack] --- last 40 lines of %s ---\n' "$f"
        tail -n 40 "$f"
      fi
    done
  } >&2
  exit 1
}

stack_tool() {
  # The health checker is the project's own bandit-stack binary, so the checks
  # go through the same client libraries as the pipeline.
  local out=$BIN/bandit-stack
  if [[ ! -x $out || -n $(find "$ROOT/cmd/bandit-stack" "$ROOT/cmd/internal" "$ROOT/go.mod" -newer "$out" -print -quit 2>/dev/null) ]]; then
    mkdir -p "$BIN"
    (cd "$ROOT" && go build -o "$out" ./cmd/bandit-stack) || die "building cmd/bandit-stack failed"
  fi
  BANDITSTREAM_KAFKA_BROKERS=$(kafka_brokers) BANDITSTREAM_REDIS_ADDR=$(redis_addrs) \
    BANDITSTREAM_CQL_USERNAME=$CASSANDRA_USER BANDITSTREAM_CQL_PASSWORD=$CASSANDRA_PASSWORD "$out" "$@"
}

tls_material() {
  # A self-signed certificate for 127.0.0.1, made once: the servers' PKCS12
  # key store and the certificate as PEM, for clients to trust.
  local dir=$STATE/tls
  [[ -f $dir/keystore.p12 && -f $dir/ca.pem ]] && return
  mkdir -p "$dir"
  rm -f "$dir/keystore.p12" "$dir/ca.pem"
  keytool -genkeypair -alias banditstream-local -keyalg RSA -keysize 2048 -validity 3650 \
    -dname "CN=127.0.0.1" -ext "SAN=IP:127.0.0.1,DNS:localhost" \
    -keystore "$dir/keystore.p12" -storetype PKCS12 -storepass "$TLS_STORE_PASSWORD" \
    >"$dir/keytool.log" 2>&1 || { cat "$dir/keytool.log" >&2; die "making the local TLS certificate failed"; }
  keytool -exportcert -rfc -alias banditstream-local -keystore "$dir/keystore.p12" -storetype PKCS12 \
    -storepass "$TLS_STORE_PASSWORD" -file "$dir/ca.pem" >>"$dir/keytool.log" 2>&1 ||
    { cat "$dir/keytool.log" >&2; die "exporting the local TLS certificate failed"; }
}

maven_libs() {
  # maven_libs NAME VERSION PROPERTY: resolve a runtime class path once.
  local name=$1 version=$2 prop=$3 dest=$LIBS/$1-$2
  if [[ -f $dest/.complete ]]; then
    echo "$dest"
    return
  fi
  command -v mvn >/dev/null || die "mvn not found: Maven is needed to fetch $name from Maven Central"
  log "resolving $name $version and its runtime dependencies from Maven Central"
  rm -rf "$dest"
  mkdir -p "$dest"
  if ! mvn -q -B -f "$HERE/$name/pom.xml" "-D$prop=$version" \
      dependency:copy-dependencies -DincludeScope=runtime "-DoutputDirectory=$dest" \
      >"$STATE/maven-$name.log" 2>&1; then
    tail -n 30 "$STATE/maven-$name.log" >&2
    die "maven could not resolve $name $version (full log: $STATE/maven-$name.log)"
  fi
  touch "$dest/.complete"
  echo "$dest"
}

wait_for() {
  # wait_for SERVICE SECONDS CHECK...: poll CHECK until it succeeds, the
  # process dies, or time runs out.
  local svc=$1 secs=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    running_pid "$svc" >/dev/null || fail_with_log "$svc" "$svc exited while starting"
    ((SECONDS < deadline)) || fail_with_log "$svc" "$svc not serving after ${secs}s (check: $*)"
    sleep 1
  done
}

ensure_port_free() {
  if port_open "$(port_of "$1")"; then
    die "port $(port_of "$1") is taken by a process this script did not start; stop it or set the ${1^^}_PORT variable"
  fi
}

launch() {
  # launch SERVICE CMD...: start detached in its own session, record the pid.
  # The child is forked in the service's folder, so that its working
  # directory, which running_pid checks, is right from its first instant (a
  # subshell that changes directory after the fork could be seen in the
  # old one, and the service taken for dead).
  local svc=$1 out pid
  shift
  out=$(realpath -m "$STATE/$svc/stdout.log")
  pid=$(realpath -m "$(pid_file "$svc")")
  pushd "$(svc_dir "$svc")" >/dev/null
  setsid "$@" >"$out" 2>&1 </dev/null &
  echo $! >"$pid"
  popd >/dev/null
}

# ---------------------------------------------------------------- redis ----

redis_install() {
  if command -v redis-server >/dev/null && redis-server --version | grep -q "v=${REDIS_MAJOR}\."; then
    return
  fi
  command -v apt-get >/dev/null || die "redis-server ${REDIS_MAJOR}.x is missing and apt-get is not available"
  log "installing Redis ${REDIS_MAJOR} from Debian's packages"
  local sudo=()
  [[ $(id -u) == 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq >"$STATE/apt.log" 2>&1 || { tail -n 20 "$STATE/apt.log" >&2; die "apt-get update failed"; }
  local pkg="redis-server=$REDIS_DEB_VERSION"
  if ! apt-cache madison redis-server | grep -qF "$REDIS_DEB_VERSION"; then
    log "Debian revision $REDIS_DEB_VERSION is gone from the archive; taking the current one"
    pkg=redis-server
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$pkg" \
    >>"$STATE/apt.log" 2>&1 || { tail -n 20 "$STATE/apt.log" >&2; die "apt-get install $pkg failed"; }
  redis-server --version | grep -q "v=${REDIS_MAJOR}\." || die "installed redis-server is not ${REDIS_MAJOR}.x: $(redis-server --version)"
}

redis_launch() {
  # redis_launch SERVICE [CONFIG LINE...]: write the server's configuration
  # and start it, waiting for PING.
  local svc=$1 dir port
  shift
  dir=$(svc_dir "$svc")
  port=$(port_of "$svc")
  mkdir -p "$dir"
  redis_install
  # No persistence: the hot tier is rebuilt from the cold tier and Kafka
  # (and a lost cluster node really loses its data). noeviction: evicting
  # keys would silently lose counts.
  {
    cat <<EOF
bind 127.0.0.1
port $port
protected-mode yes
daemonize no
dir $dir
logfile $dir/redis.log
save ""
appendonly no
maxmemory-policy noeviction
EOF
    printf '%s\n' "$@"
  } >"$dir/redis.conf"
  ensure_port_free "$svc"
  launch "$svc" redis-server "$dir/redis.conf"
  wait_for "$svc" 30 redis-cli -p "$port" ping
}

redis_start() {
  redis_launch redis
  wait_for redis 30 stack_tool check redis
}

redis_node_start() {
  # A node of the Redis Cluster. Its nodes.conf (kept across restarts) makes
  # a restarted node rejoin: as a replica of whoever took its slots over.
  # after_start waits for the cluster to settle.
  local svc=$1
  redis_launch "$svc" "cluster-enabled yes" "cluster-config-file nodes.conf" \
    "cluster-node-timeout $REDIS_CLUSTER_NODE_TIMEOUT_MS" "cluster-require-full-coverage yes"
}

redis_cluster_ok() {
  # The cluster of the node on port $1 covers every slot with a known
  # master (formed, not failing), as that node sees it.
  redis-cli -p "$1" cluster info 2>/dev/null | grep -q '^cluster_state:ok'
}

redis_node_settled() {
  # The node on port $1 sees the whole cluster serving and, when it is a
  # replica, has its master's data.
  redis_cluster_ok "$1" || return 1
  local info
  info=$(redis-cli -p "$1" info replication)
  ! grep -q '^role:slave' <<<"$info" || grep -q '^master_link_status:up' <<<"$info"
}

redis_cluster_form() {
  # Create the cluster once (3 masters, a replica each), then wait until
  # every node sees every slot served and every replica is in sync.
  local ports=() s known p
  for s in "${REDIS_NODES[@]}"; do ports+=("$(port_of "$s")"); done
  known=$(redis-cli -p "${ports[0]}" cluster info | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')
  if [[ $known == 1 ]]; then
    log "creating the Redis Cluster (3 masters, 3 replicas)"
    local addrs=()
    for p in "${ports[@]}"; do addrs+=("127.0.0.1:$p"); done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
      >"$STATE/redis-cluster-create.log" 2>&1 ||
      { cat "$STATE/redis-cluster-create.log" >&2; die "redis-cli --cluster create failed"; }
  fi
  local deadline=$((SECONDS + 60))
  for p in "${ports[@]}"; do
    until redis_node_settled "$p"; do
      ((SECONDS < deadline)) || die "the Redis Cluster is not serving after 60s (node 127.0.0.1:$p: $(redis-cli -p "$p" cluster info | head -n 1))"
      sleep 0.5
    done
  done
  wait_for redis-1 30 stack_tool check redis
}

# ---------------------------------------------------------------- kafka ----

kafka_start() {
  local dir
  dir=$(svc_dir kafka)
  mkdir -p "$dir/data" "$dir/logs"
  tls_material
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT,SASL_SSL://127.0.0.1:$KAFKA_SSL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT,SASL_SSL://127.0.0.1:$KAFKA_SSL_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USER="$KAFKA_SASL_PASSWORD";
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$STATE/tls/keystore.p12
listener.name.sasl_ssl.ssl.keystore.password=$TLS_STORE_PASSWORD
listener.name.sasl_ssl.ssl.key.password=$TLS_STORE_PASSWORD
EOF
  kafka_common_properties "$dir" 1 1 >>"$dir/server.properties"
  kafka_launch kafka "$KAFKA_HEAP" "" "$KAFKA_PORT"
  wait_for kafka 90 stack_tool check kafka
  kafka_topics kafka
}

kafka_common_properties() {
  # kafka_common_properties DIR REPLICAS MIN_ISR: the broker settings both
  # topologies share, the internal topics replicated REPLICAS times.
  local dir=$1 rf=$2 isr=$3
  cat <<EOF
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
min.insync.replicas=$isr
message.max.bytes=4194304
log.retention.hours=-1
EOF
}

kafka_node_start() {
  # A broker of the three-broker cluster, each a KRaft controller too.
  local svc=$1 dir n voters="" i
  n=$(node_of "$svc")
  dir=$(svc_dir "$svc")
  mkdir -p "$dir/data" "$dir/logs"
  for i in 1 2 3; do voters+="${voters:+,}$i@127.0.0.1:$((KAFKA_CLUSTER_CONTROLLER_PORT + i - 1))"; done
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(port_of "$svc"),CONTROLLER://127.0.0.1:$((KAFKA_CLUSTER_CONTROLLER_PORT + n - 1))
advertised.listeners=PLAINTEXT://127.0.0.1:$(port_of "$svc")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
default.replication.factor=3
unclean.leader.election.enable=false
EOF
  kafka_common_properties "$dir" 3 2 >>"$dir/server.properties"
  # One cluster id for the three, made once.
  local idf=$STATE/kafka-cluster.id
  if [[ ! -s $idf ]]; then
    java -cp "$(maven_libs kafka "$KAFKA_VERSION" kafka.version)/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1 >"$idf"
    [[ -s $idf ]] || die "kafka StorageTool random-uuid printed nothing"
  fi
  # A broker alone cannot register until a quorum of controllers runs, so
  # its controller port is what a node started alone is waited for.
  kafka_launch "$svc" "$KAFKA_CLUSTER_HEAP" "$(<"$idf")" $((KAFKA_CLUSTER_CONTROLLER_PORT + n - 1))
  if kafka_nodes_running; then
    # All three run (a start or a restart): the cluster serves again.
    wait_for "$svc" 120 stack_tool check kafka
  fi
}

kafka_nodes_running() {
  local s
  for s in "${KAFKA_NODES[@]}"; do running_pid "$s" >/dev/null || return 1; done
}

kafka_topics() {
  # The pipeline's topics (replicated by the brokers' default) and the SCRAM
  # user of the single broker's SASL_SSL listener.
  local svc=$1
  stack_tool topics --topics "$KAFKA_TOPICS" || fail_with_log "$svc" "creating topics failed"
  [[ $svc == kafka ]] || return 0
  BANDITSTREAM_SCRAM_PASSWORD=$KAFKA_SCRAM_PASSWORD stack_tool scram-user -scram-user "$KAFKA_SCRAM_USER" ||
    fail_with_log kafka "creating the SCRAM user failed"
}

kafka_launch() {
  # kafka_launch SERVICE HEAP CLUSTER_ID PORT: format the storage once (with
  # CLUSTER_ID, or a new one), start the broker, wait for PORT.
  local svc=$1 heap=$2 id=$3 wait_port=$4 dir lib
  dir=$(svc_dir "$svc")
  lib=$(maven_libs kafka "$KAFKA_VERSION" kafka.version)
  cat >"$dir/log4j2.properties" <<EOF
status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $dir/logs/server.log
appender.file.filePattern = $dir/logs/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.org.name = org.apache.kafka
logger.org.level = INFO
EOF
  local java_opts=(-Xms"$heap" -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -Djava.awt.headless=true "-Dlog4j2.configurationFile=$dir/log4j2.properties")
  if [[ ! -f $dir/data/meta.properties ]]; then
    if [[ -z $id ]]; then
      id=$(java -cp "$lib/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
      [[ -n $id ]] || die "kafka StorageTool random-uuid printed nothing"
    fi
    java "${java_opts[@]}" -cp "$lib/*" kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" \
      >"$dir/logs/format.log" 2>&1 || { cat "$dir/logs/format.log" >&2; die "formatting Kafka storage failed"; }
  fi
  ensure_port_free "$svc"
  launch "$svc" java "${java_opts[@]}" -cp "$lib/*" kafka.Kafka "$dir/server.properties"
  wait_for "$svc" 90 port_open "$wait_port"
}

# ------------------------------------------------------------ cassandra ----

cassandra_start() {
  local dir lib
  dir=$(svc_dir cassandra)
  mkdir -p "$dir/data" "$dir/logs" "$dir/conf/triggers"
  lib=$(maven_libs cassandra "$CASSANDRA_VERSION" cassandra.version)
  tls_material
  cat >"$dir/conf/cassandra.yaml" <<EOF
cluster_name: banditstream-local
num_tokens: 16
allocate_tokens_for_local_replication_factor: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
data_file_directories: [$dir/data/data]
commitlog_directory: $dir/data/commitlog
saved_caches_directory: $dir/data/saved_caches
hints_directory: $dir/data/hints
cdc_raw_directory: $dir/data/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$CASSANDRA_STORAGE_PORT"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: $CASSANDRA_STORAGE_PORT
native_transport_port: $CASSANDRA_PORT
start_native_transport: true
endpoint_snitch: SimpleSnitch
authenticator: ${CASSANDRA_AUTHENTICATOR:-AllowAllAuthenticator}
authorizer: AllowAllAuthorizer
concurrent_reads: 16
concurrent_writes: 32
concurrent_compactors: 1
client_encryption_options:
  enabled: true
  optional: true
  keystore: $STATE/tls/keystore.p12
  keystore_password: $TLS_STORE_PASSWORD
  store_type: PKCS12
  require_client_auth: false
EOF
  cat >"$dir/conf/logback.xml" <<EOF
<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.rolling.RollingFileAppender">
    <file>$dir/logs/system.log</file>
    <rollingPolicy class="ch.qos.logback.core.rolling.FixedWindowRollingPolicy">
      <fileNamePattern>$dir/logs/system.log.%i</fileNamePattern>
      <minIndex>1</minIndex><maxIndex>3</maxIndex>
    </rollingPolicy>
    <triggeringPolicy class="ch.qos.logback.core.rolling.SizeBasedTriggeringPolicy">
      <maxFileSize>50MB</maxFileSize>
    </triggeringPolicy>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
EOF
  # The flags of Cassandra's own jvm17-server.options and cassandra-env.sh.
  local java_opts=(
    -Xms"$CASSANDRA_HEAP" -Xmx"$CASSANDRA_HEAP" -XX:+UseG1GC -XX:+ParallelRefProcEnabled
    -XX:MaxTenuringThreshold=1 -XX:G1HeapRegionSize=16m -XX:MaxGCPauseMillis=300
    -XX:ParallelGCThreads=2 -XX:ConcGCThreads=1 -XX:+ExitOnOutOfMemoryError
    -Djdk.attach.allowAttachSelf=true
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
    --add-exports java.sql/java.sql=ALL-UNNAMED
    --add-exports java.base/java.lang.ref=ALL-UNNAMED
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
    --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
    --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
    --add-opens java.base/java.lang.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens java.base/java.io=ALL-UNNAMED
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED
    --add-opens java.base/java.util=ALL-UNNAMED
    -Dio.netty.tryReflectionSetAccessible=true
    -Dio.netty.allocator.useCacheForAllThreads=true
    -Dio.netty.allocator.maxOrder=11
    "-javaagent:$(ls "$lib"/jamm-*.jar | head -n 1)"
    -Djava.net.preferIPv4Stack=true
    "-Dcassandra.jmx.local.port=$CASSANDRA_JMX_PORT"
    "-Dcassandra.config=file://$dir/conf/cassandra.yaml"
    "-Dcassandra.triggers_dir=$dir/conf/triggers"
    "-Dlogback.configurationFile=$dir/conf/logback.xml"
    "-Dcassandra.logdir=$dir/logs"
    "-Dcassandra.storagedir=$dir/data"
    -Dcassandra-foreground=yes
    # One node: no gossip settling, no ring delay.
    -Dcassandra.skip_wait_for_gossip_to_settle=0
    -Dcassandra.ring_delay_ms=0
    -Dcassandra.superuser_setup_delay_ms=0
  )
  ensure_port_free cassandra
  launch cassandra java "${java_opts[@]}" -cp "$dir/conf:$lib/*" org.apache.cassandra.service.CassandraDaemon
  wait_for cassandra 180 port_open "$CASSANDRA_PORT"
  wait_for cassandra 120 stack_tool check cql
}

# -------------------------------------------------------------- generic ----

start_one() {
  local svc=$1 t0=$SECONDS
  if pid=$(running_pid "$svc"); then
    log "$svc already running (pid $pid)"
    return
  fi
  mkdir -p "$(svc_dir "$svc")"
  log "starting $svc"
  case $svc in
    redis-*) redis_node_start "$svc" ;;
    kafka-*) kafka_node_start "$svc" ;;
    *) "${svc}_start" ;;
  esac
  log "$svc serving on 127.0.0.1:$(port_of "$svc") (pid $(running_pid "$svc"), $((SECONDS - t0))s)"
}

stop_one() {
  local svc=$1 sig=${2:-TERM} pid
  if ! pid=$(running_pid "$svc"); then
    rm -f "$(pid_file "$svc")"
    return
  fi
  log "stopping $svc (pid $pid, SIG$sig)"
  kill "-$sig" "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "$svc did not stop in 60s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.2
  done
  rm -f "$(pid_file "$svc")"
}

status_one() {
  local svc=$1 pid
  if pid=$(running_pid "$svc"); then
    local what=${svc%-*}
    [[ $what == cassandra ]] && what=cql
    if stack_tool check "$what" >/dev/null 2>&1; then
      printf '%-10s serving   pid %-8s 127.0.0.1:%s\n' "$svc" "$pid" "$(port_of "$svc")"
    else
      printf '%-10s starting  pid %-8s 127.0.0.1:%s (not serving yet)\n' "$svc" "$pid" "$(port_of "$svc")"
      return 1
    fi
  else
    printf '%-10s stopped\n' "$svc"
    return 1
  fi
}

services() {
  # The services named (all of the topology's when none), a group name
  # standing for its nodes in the cluster topology.
  if (($# == 0)); then
    echo "${ALL_SERVICES[@]}"
    return
  fi
  for s in "$@"; do
    case $TOPOLOGY:$s in
      *:cassandra | single:kafka | single:redis) echo "$s" ;;
      cluster:redis) echo "${REDIS_NODES[@]}" ;;
      cluster:kafka) echo "${KAFKA_NODES[@]}" ;;
      cluster:redis-[1-6] | cluster:kafka-[1-3]) echo "$s" ;;
      *) die "unknown service $s in the $TOPOLOGY topology (kafka, cassandra, redis$([[ $TOPOLOGY == cluster ]] && echo ', redis-1..redis-6, kafka-1..kafka-3'))" ;;
    esac
  done
}

after_start() {
  # What a cluster needs once its nodes run: the Redis Cluster formed, the
  # topics made. Skipped while a node is down.
  [[ $TOPOLOGY == cluster ]] || return 0
  local s redis_up=1
  for s in "${REDIS_NODES[@]}"; do running_pid "$s" >/dev/null || redis_up=0; done
  if [[ " $* " == *" redis-"* ]] && ((redis_up)); then
    redis_cluster_form
  fi
  if [[ " $* " == *" kafka-"* ]] && kafka_nodes_running; then
    kafka_topics kafka-1
  fi
}

main() {
  local cmd=${1:-}
  shift || true
  mkdir -p "$STATE"
  case $cmd in
    up | start)
      local t0=$SECONDS list
      list=$(services "$@")
      for s in $list; do start_one "$s"; done
      # shellcheck disable=SC2086
      after_start $list
      log "all serving after $((SECONDS - t0))s"
      ;;
    down)
      local list
      if (($# == 0)); then
        list="redis ${REDIS_NODES[*]} kafka ${KAFKA_NODES[*]} cassandra"
      else
        list=$(services "$@")
      fi
      # Reverse order: clients of the log before the log.
      for s in $(echo "$list" | tr ' ' '\n' | tac); do stop_one "$s"; done
      ;;
    stop) for s in $(services "$@"); do stop_one "$s"; done ;;
    kill) for s in $(services "$@"); do stop_one "$s" KILL; done ;;
    status)
      local rc=0
      for s in "${ALL_SERVICES[@]}"; do status_one "$s" || rc=1; done
      return $rc
      ;;
    logs)
      for s in $(services "$@"); do
        local lf
        lf=$(log_file "$s")
        printf '==> %s (%s) <==\n' "$s" "$lf"
        [[ -f $lf ]] && tail -n "${LINES_PER_LOG:-30}" "$lf" || echo "(no log yet)"
      done
      ;;
    env)
      echo "TOPOLOGY=$TOPOLOGY"
      echo "BANDITSTREAM_KAFKA_BROKERS=$(kafka_brokers)"
      echo "BANDITSTREAM_CQL_HOSTS=127.0.0.1:$CASSANDRA_PORT"
      echo "BANDITSTREAM_REDIS_ADDR=$(redis_addrs)"
      echo "BANDITSTREAM_CQL_USERNAME=$CASSANDRA_USER"
      echo "BANDITSTREAM_CQL_PASSWORD=$CASSANDRA_PASSWORD"
      ;;
    tls)
      # The material of the TLS listeners, made if missing.
      tls_material
      echo "$STATE/tls/ca.pem"
      ;;
    *)
      sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      [[ -z $cmd ]] || die "unknown command $cmd"
      ;;
  esac
}

main "$@"
