#!/usr/bin/env bash
# The sidecar injection webhook's certificate, for clusters without cert-manager: a CA and a serving certificate for
# aibrix-webhook.<namespace>.svc made with openssl, stored as the Secret the controller mounts (kubernetes.io/tls,
# with ca.crt), and the CA written into the MutatingWebhookConfiguration's caBundle. Run it after
# `kubectl apply -k deploy/`, and again before the certificate expires (--days, default 365): the controller re-reads
# the Secret when the kubelet updates it; no restart.
#
#   scripts/webhook-certs.sh [--namespace aibrix-system] [--days 365]
#   KUBECTL="kubectl --context prod" scripts/webhook-certs.sh       # which kubectl, and its flags
set -euo pipefail

namespace=aibrix-system
service=aibrix-webhook
secret=aibrix-webhook-cert
webhook=aibrix-sidecar-injection
days=365
while [ $# -gt 0 ]; do
  case "$1" in
    --namespace) namespace="$2"; shift 2 ;;
    --days) days="$2"; shift 2 ;;
    --service) service="$2"; shift 2 ;;
    --secret) secret="$2"; shift 2 ;;
    --webhook) webhook="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "webhook-certs.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
read -r -a kubectl <<< "${KUBECTL:-kubectl}"
command -v openssl >/dev/null || { echo "webhook-certs.sh: needs openssl" >&2; exit 2; }
"${kubectl[@]}" get mutatingwebhookconfiguration "$webhook" -o name >/dev/null \
  || { echo "webhook-certs.sh: no MutatingWebhookConfiguration $webhook: kubectl apply -k deploy/ first" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT  # the CA key is not kept: the next run makes a new CA (and patches caBundle again)
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
  -subj "/CN=aibrix-webhook-ca" -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/tls.key"
openssl req -new -key "$work/tls.key" -subj "/CN=$service.$namespace.svc" -out "$work/tls.csr"
printf 'subjectAltName=DNS:%s.%s.svc,DNS:%s.%s.svc.cluster.local\nextendedKeyUsage=serverAuth\n' \
  "$service" "$namespace" "$service" "$namespace" > "$work/ext.cnf"
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial -days "$days" \
  -extfile "$work/ext.cnf" -out "$work/tls.crt" 2>/dev/null

"${kubectl[@]}" create secret generic "$secret" --namespace "$namespace" --type kubernetes.io/tls \
  --from-file=tls.crt="$work/tls.crt" --from-file=tls.key="$work/tls.key" --from-file=ca.crt="$work/ca.crt" \
  --dry-run=client -o yaml | "${kubectl[@]}" apply -f - >/dev/null
bundle=$(base64 -w0 < "$work/ca.crt")
count=$("${kubectl[@]}" get mutatingwebhookconfiguration "$webhook" -o jsonpath='{range .webhooks[*]}x{end}')
patch=""
for ((i = 0; i < ${#count}; i++)); do
  patch+="${patch:+,}{\"op\":\"add\",\"path\":\"/webhooks/$i/clientConfig/caBundle\",\"value\":\"$bundle\"}"
done
"${kubectl[@]}" patch mutatingwebhookconfiguration "$webhook" --type=json -p "[$patch]" >/dev/null
echo "secret $namespace/$secret and the caBundle of $webhook (${#count} webhooks) written; valid $days days"
