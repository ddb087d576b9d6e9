#!/usr/bin/env bash
usage="Usage: scripts/operational-rotate-keys.sh --stage beta|gamma|prod [--prod]
                                          --key jwt|attestation|ingest-secret|database|redis
                                          [--yes]

Replace one of a stage's secrets in Secrets Manager and restart the services that read it.
New values are made here (Ed25519 keys with the same code the stack uses, random strings from
Python's secrets module), written to a private temporary file and handed to the AWS CLI as
file://, so they never appear on a command line or in this script's output.

  jwt             access-token signing key (STREAMR_JWT_PRIVATE_KEY). Access tokens signed
                  with the old key stop working at once; clients log in again with their
                  refresh token. Restarts: coordinator.
  attestation     segment signing key (STREAMR_ATTESTATION_PRIVATE_KEY). Segments signed before
                  no longer verify against the published key: rotate between streams.
                  Restarts: coordinator.
  ingest-secret   shared by the coordinator and the ingest (STREAMR_INGEST_SECRET). Both restart;
                  streams on air are cut and OBS reconnects. Restarts: coordinator, ingest.
  database        the RDS master password: set on the instance, then in its secret.
                  Restarts: coordinator, worker (connections fail until they have restarted).
  redis           the Redis AUTH token, in two steps (old and new both valid in between).
                  Restarts: coordinator, worker.

  --stage STAGE     beta, gamma or prod
  --prod            required with --stage prod
  --key KEY         which secret
  --yes             do not ask
  -h, --help        this text"
# shellcheck source=../infrastructure/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../infrastructure/scripts/lib.sh"
parse_common "$@"

key=""
set -- "${ARGS[@]+"${ARGS[@]}"}"
while (($#)); do
  case "$1" in
    --key) (($# >= 2)) || usage_error "--key needs a value"; key="$2"; shift 2 ;;
    *) usage_error "unknown option '$1'" ;;
  esac
done
case "$key" in
  jwt | attestation | ingest-secret | database | redis) ;;
  "") usage_error "--key is required: jwt, attestation, ingest-secret, database or redis" ;;
  *) usage_error "unknown key '$key'" ;;
esac

region="$(region)"
scratch="$(private_dir)"
trap 'rm -rf "$scratch"' EXIT
new="$scratch/value"

# Makes the new value into $new (mode 0600): an Ed25519 PEM, or N random letters and digits.
make_value() {
  (
    umask 077
    cd "$INFRA"
    if [ "$1" = pem ]; then
      "$PYTHON" -c 'from streamr_infra.lambdas.signing_keys.index import ed25519_private_key_pem as k
print(k(), end="")' >"$new"
    else
      "$PYTHON" -c 'import secrets, string, sys
alphabet = string.ascii_letters + string.digits
print("".join(secrets.choice(alphabet) for _ in range(int(sys.argv[1]))), end="")' "$1" >"$new"
    fi
  )
}

put_secret() {
  "$AWS" secretsmanager put-secret-value --region "$region" --secret-id "$1" \
    --secret-string "file://$2" --query VersionId --output text >/dev/null
}

case "$key" in
  jwt | attestation)
    output=JwtKeySecretArn
    [ "$key" = attestation ] && output=AttestationKeySecretArn
    confirm "About to replace the $key signing key of $STAGE and restart the coordinators." "$key"
    make_value pem
    put_secret "$(stack_output foundation "$output")" "$new"
    force_new_deployment coordinator
    ;;
  ingest-secret)
    confirm "About to replace the ingest secret of $STAGE: streams on air are cut." "$key"
    make_value 48
    put_secret "$(stack_output foundation IngestSecretArn)" "$new"
    force_new_deployment coordinator ingest
    ;;
  database)
    confirm "About to change the $STAGE database password: API errors until restarted." "$key"
    make_value 32
    secret="$(stack_output foundation DatabaseSecretArn)"
    instance="$(stack_output foundation DatabaseInstanceId)"
    # The secret holds host, port, user and engine too; only the password changes.
    "$AWS" secretsmanager get-secret-value --region "$region" --secret-id "$secret" \
      --query SecretString --output text |
      "$PYTHON" -c 'import json, sys
value = json.loads(sys.stdin.read())
value["password"] = open(sys.argv[1]).read()
print(json.dumps(value), end="")' "$new" >"$scratch/secret.json"
    "$AWS" rds modify-db-instance --region "$region" --db-instance-identifier "$instance" \
      --master-user-password "file://$new" --apply-immediately \
      --query DBInstance.DBInstanceIdentifier --output text >/dev/null
    "$AWS" rds wait db-instance-available --region "$region" --db-instance-identifier "$instance"
    put_secret "$secret" "$scratch/secret.json"
    force_new_deployment coordinator worker
    ;;
  redis)
    confirm "About to replace the $STAGE Redis AUTH token (old and new valid meanwhile)." "$key"
    make_value 64
    group="$(stack_output foundation RedisReplicationGroupId)"
    for strategy in ROTATE SET; do
      "$AWS" elasticache modify-replication-group --region "$region" \
        --replication-group-id "$group" --auth-token "file://$new" \
        --auth-token-update-strategy "$strategy" --apply-immediately \
        --query ReplicationGroup.Status --output text >/dev/null
      "$AWS" elasticache wait replication-group-available --region "$region" \
        --replication-group-id "$group"
      if [ "$strategy" = ROTATE ]; then
        put_secret "$(stack_output foundation RedisAuthSecretArn)" "$new"
        force_new_deployment coordinator worker
      fi
    done
    ;;
esac
echo "$SCRIPT: $key of $STAGE rotated" >&2
