#!/usr/bin/env bash
# Installs the Debian packages the project needs beyond Python, when they are missing: Java 17
# and Maven (Kafka and Elasticsearch come from Maven Central), Prometheus and Alertmanager (the
# local stack's monitoring), rsyslog with its Kafka output and GnuTLS stream driver (the stack's
# ATNA syslog receiver, TLS included),
# Debian's docker-compose (validates docker-compose.yml; no engine).
# Runs apt-get only when something is missing; prints what to install when not root.
set -euo pipefail

need=()
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || need+=(docker-compose)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
command -v javac >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
# The local stack's Prometheus and Alertmanager (and promtool, amtool for the config tests).
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)
# The local stack's syslog receiver (ATNA audit messages into Kafka). rsyslogd lives in
# /usr/sbin, often not on a user's PATH; the Kafka output (omkafka) is a separate package.
command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ] || need+=(rsyslog)
dpkg -s rsyslog-kafka >/dev/null 2>&1 || need+=(rsyslog-kafka)
# Syslog over TLS (RFC 5425, IHE ATNA): the GnuTLS network stream driver (lmnsd_gtls.so); not
# the OpenSSL one, which double-closes sockets in Debian 12's rsyslog
# (streams/stack/rsyslog_config.py says why).
dpkg -s rsyslog-gnutls >/dev/null 2>&1 || need+=(rsyslog-gnutls)
# Headless Chromium and its WebDriver, for the console's browser test.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
# npm fetches the console's web assets (Chart.js) at set-up.
command -v npm >/dev/null 2>&1 || need+=(npm)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
# shellcheck disable=SC2207
need=($(printf '%s\n' "${need[@]}" | sort -u))
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${need[*]}" >&2
  echo "install them with: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
