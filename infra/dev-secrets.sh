#!/bin/sh
# Generates random development secrets once, for the dev overlay and for compose, so that a
# first `skaffold dev` or `docker compose up` needs no manual step (skaffold's dev profile runs
# it before rendering; infra/check.py too). Files that exist are kept, so the values stay
# stable and pods are not restarted for nothing. Both outputs are git-ignored:
#   infra/k8s/overlays/dev/secrets/*.env   read by the dev overlay's secretGenerator
#   .env                                   read by docker compose
# STRIPE_KEY and STRIPE_PUBLISHABLE_KEY are taken from the environment when set (Stripe's test
# mode; then remove components/fake-stripe from the dev overlay); otherwise STRIPE_KEY is
# sk_test_fake, the key the dev overlay's fake Stripe takes, and STRIPE_PUBLISHABLE_KEY empty
# (the test-token field). Production secrets are created by hand (infra/README.md).
set -eu
cd "$(dirname "$0")/.."

# URL-safe values: the passwords go into MONGO_URL and NATS_URL.
hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
# A MongoDB keyFile: 6 to 1024 base64 characters.
keyfile() { head -c 756 /dev/urandom | base64 | tr -d '\n'; }

# write FILE LINE...: the lines into FILE, unless it exists.
write() {
  file=$1
  shift
  [ -e "$file" ] && return 0
  mkdir -p "$(dirname "$file")"
  umask 077
  printf '%s\n' "$@" > "$file"
  echo "generated $file"
}

services="auth tickets orders payments expiration"
nats_users="tickets orders payments expiration ops route"

dev=infra/k8s/overlays/dev/secrets
write "$dev/jwt-secret.env" "JWT_KEY=$(hex 32)"
# An empty STRIPE_KEY (this script's earlier default, for the local test gateway) no longer
# starts payments: such a file is written again.
if grep -qx 'STRIPE_KEY=' "$dev/stripe-secret.env" 2>/dev/null; then
  rm "$dev/stripe-secret.env"
fi
write "$dev/stripe-secret.env" "STRIPE_KEY=${STRIPE_KEY:-sk_test_fake}" \
  "STRIPE_PUBLISHABLE_KEY=${STRIPE_PUBLISHABLE_KEY:-}"
lines=""
for user in $nats_users; do lines="$lines $user=$(hex 24)"; done
# shellcheck disable=SC2086 # one line per user
write "$dev/nats-secret.env" $lines
for svc in $services; do
  write "$dev/$svc-mongo-secret.env" "password=$(hex 24)" "root-password=$(hex 24)" \
    "keyfile=$(keyfile)"
done

lines="JWT_KEY=$(hex 32) MONGO_KEYFILE=$(keyfile) MONGO_ROOT_PASSWORD=$(hex 24)"
for svc in $services; do
  lines="$lines $(echo "$svc" | tr a-z A-Z)_MONGO_PASSWORD=$(hex 24)"
done
for user in $nats_users; do
  lines="$lines $(echo "$user" | tr a-z A-Z)_NATS_PASSWORD=$(hex 24)"
done
# shellcheck disable=SC2086 # one line per variable
write .env $lines
