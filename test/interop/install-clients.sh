#!/usr/bin/env bash
# Installs the interop tests' clients that come from Debian's packages: Python google-auth 1.5.1
# (python3-google-auth, with python3-requests) and Java's google-auth-library and google-api-client.
# Each gets a minute; one that cannot be installed is skipped by the tests, which say why.
set -u
if ! command -v apt-get > /dev/null; then
  echo "interop clients: no apt-get here; the tests skip Debian's Python and Java clients"
  exit 0
fi
sudo=''
if [ "$(id -u)" -ne 0 ]; then sudo='sudo -n'; fi
install() {
  local what=$1
  shift
  if timeout 60 $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" > /dev/null 2>&1; then
    echo "interop clients: installed $what ($*)"
  else
    echo "interop clients: could not install $what within a minute; its tests will be skipped"
  fi
}
timeout 120 $sudo apt-get update -q > /dev/null 2>&1 || echo 'interop clients: apt-get update failed; installing from the lists there are'
install 'Python google-auth 1.5.1' python3-google-auth python3-requests
if ! command -v javac > /dev/null; then install 'a JDK' default-jdk-headless; fi
install "Java's Google clients" libgoogle-api-client-java libgoogle-auth-java libgoogle-http-client-java
