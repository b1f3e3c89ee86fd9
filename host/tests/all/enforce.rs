//! Enforcement with real firewalls (nftables; iptables + ipset), each inside a private user and
//! network namespace (`unshare -Urn`) so the host's firewall is never touched. Client addresses
//! live on the namespace's loopback; the daemon bans an attacker, which can then no longer connect
//! to a local server, while an allowlisted address still can; bans come back after the firewall
//! is flushed and the daemon restarted, heal when flushed while it runs, and expire; a second
//! offence is banned twice as long; `logsec decisions add|delete` reach the running daemon.
//! Skipped without the tools or `unshare` (fails under `LOGSEC_REQUIRE_ALL=1`).

use std::process::Command;

use super::{built_plugins, rules_file};

/// The namespace set-up both backends' scripts start with: $1 = logsec binary, $2 = work
/// directory, $3 = the local web server's port, $4 = the daemon's HTTP port. Attackers 203.0.113.7
/// and .9, allowlisted .8, all on the namespace's loopback. Starts the daemon (`$PID`), has .7 and
/// .8 attack, and checks what every backend must do: .7 is cut off (the time is printed), .8 still
/// connects, and the ban was read back.
const PRELUDE: &str = r#"
set -u
BIN=$1; W=$2; WEBPORT=$3; HTTPPORT=$4
ip link set lo up
for a in 7 8 9; do ip addr add 203.0.113.$a/32 dev lo; done
python3 -m http.server $WEBPORT --bind 127.0.0.1 --directory "$W" >/dev/null 2>&1 & WEB=$!
connects() {
  python3 - "$1" "$WEBPORT" <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(0.5); s.bind((sys.argv[1], 0))
try:
    s.connect(("127.0.0.1", int(sys.argv[2]))); sys.exit(0)
except OSError:
    sys.exit(1)
PY
}
attack() { echo "$1 - - [25/Nov/2026:10:00:00 +0000] \"GET /item.php?id=1%27%20union%20select%20password%20from%20users-- HTTP/1.1\" 200 1 \"-\" \"sqlmap/1.8\"" >> "$W/logs/access.log"; }
metric() { python3 -c "import urllib.request,sys; t=urllib.request.urlopen('http://127.0.0.1:'+sys.argv[2]+'/metrics').read().decode(); print(next((l.split()[1] for l in t.splitlines() if l.startswith(sys.argv[1]+' ')), 'missing'))" "$1" "$HTTPPORT"; }
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
sleep 0.5
check "the attacker connects before" "connects 203.0.113.7"
"$BIN" run --config "$W/logsec.toml" >>"$W/daemon.log" 2>&1 & PID=$!
for _ in $(seq 100); do [ "$(metric logsec_bans_active 2>/dev/null)" = 0 ] && break; sleep 0.1; done
start=$(date +%s%N)
attack 203.0.113.7; attack 203.0.113.8
for _ in $(seq 100); do connects 203.0.113.7 || break; sleep 0.02; done
echo "cut off after $(( ($(date +%s%N) - start) / 1000000 )) ms"
check "the attacker is cut off" "! connects 203.0.113.7"
check "the allowlisted address still connects" "connects 203.0.113.8"
check "the ban was read back" "[ \"\$(metric logsec_bans_verified_total)\" = 1 ]"
"#;

/// The nftables backend, after [`PRELUDE`].
const SCRIPT: &str = r#"
check "the table is logsec's own" "nft -j list table inet logsec | grep -q 203.0.113.7"
check "the forward hook drops too (Docker hosts)" "nft list chain inet logsec forward | grep -q '@ban4'"
kill -9 $PID; wait $PID 2>/dev/null
nft flush ruleset
check "a flushed ruleset lets the attacker in" "connects 203.0.113.7"
"$BIN" run --config "$W/logsec.toml" >>"$W/daemon.log" 2>&1 & PID=$!
for _ in $(seq 100); do connects 203.0.113.7 || break; sleep 0.05; done
check "the ban is restored at start-up" "! connects 203.0.113.7"
check "restored from the store" "[ \"\$(metric logsec_bans_restored_total)\" = 1 ]"
nft flush ruleset
for _ in $(seq 160); do connects 203.0.113.7 || break; sleep 0.05; done
check "a ruleset flushed while running heals" "! connects 203.0.113.7"
for _ in $(seq 400); do connects 203.0.113.7 && break; sleep 0.05; done
check "the ban expires" "connects 203.0.113.7"
timeout_of() { nft -j list set inet logsec ban4 | python3 -c "import json,sys; d=json.load(sys.stdin); print(max([e['elem']['timeout'] for i in d['nftables'] if 'set' in i for e in i['set'].get('elem', []) if isinstance(e, dict)] or [0]))"; }
attack 203.0.113.7
for _ in $(seq 100); do connects 203.0.113.7 || break; sleep 0.05; done
check "a second offence is banned again" "! connects 203.0.113.7"
check "for twice as long (timeout $(timeout_of) s)" "[ \"\$(timeout_of)\" -ge 27 ]"
"$BIN" decisions delete --config "$W/logsec.toml" 203.0.113.7 >>"$W/cli.log" 2>&1
for _ in $(seq 160); do connects 203.0.113.7 && break; sleep 0.05; done
check "logsec decisions delete lifts the ban" "connects 203.0.113.7"
"$BIN" decisions add --config "$W/logsec.toml" --duration 1h 203.0.113.9 >>"$W/cli.log" 2>&1
for _ in $(seq 160); do connects 203.0.113.9 || break; sleep 0.05; done
check "logsec decisions add bans" "! connects 203.0.113.9"
kill -TERM $PID; wait $PID
check "SIGTERM exits 0" "[ $? -eq 0 ]"
kill $WEB
exit $fail
"#;

/// The iptables + ipset backend, after [`PRELUDE`].
const IPSET_SCRIPT: &str = r#"
check "the address is in logsec's ipset" "ipset list logsec4 | grep -q '^203.0.113.7 timeout'"
check "one INPUT rule per set" "[ \"\$(iptables -S INPUT | grep -c 'match-set logsec4 src -j DROP')\" = 1 ]"
check "the FORWARD chain drops too" "iptables -S FORWARD | grep -q 'match-set logsec4 src -j DROP'"
check "IPv6 has its own rules" "ip6tables -S INPUT | grep -q 'match-set logsec6 src -j DROP'"
ipset flush logsec4
for _ in $(seq 160); do connects 203.0.113.7 || break; sleep 0.05; done
check "a flushed set heals" "! connects 203.0.113.7"
kill -9 $PID; wait $PID 2>/dev/null
iptables -F; ip6tables -F; ipset flush
check "a flushed firewall lets the attacker in" "connects 203.0.113.7"
"$BIN" run --config "$W/logsec.toml" >>"$W/daemon.log" 2>&1 & PID=$!
for _ in $(seq 100); do connects 203.0.113.7 || break; sleep 0.05; done
check "the ban is restored at start-up" "! connects 203.0.113.7"
check "a restart does not stack rules" "[ \"\$(iptables -S INPUT | grep -c 'match-set logsec4 src -j DROP')\" = 1 ]"
for _ in $(seq 400); do connects 203.0.113.7 && break; sleep 0.05; done
check "the ban expires" "connects 203.0.113.7"
kill -TERM $PID; wait $PID
check "SIGTERM exits 0" "[ $? -eq 0 ]"
kill $WEB
exit $fail
"#;

/// Whether `unshare -Urn` can run `probe` (a firewall tool); fails the test when it cannot and
/// `LOGSEC_REQUIRE_ALL=1`, else says it is skipped.
fn namespace_usable(probe: &[&str], what: &str) -> bool {
    let usable = Command::new("unshare")
        .args(["-Urn"])
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if !usable {
        assert_ne!(
            std::env::var("LOGSEC_REQUIRE_ALL").as_deref(),
            Ok("1"),
            "{what} and unshare -Urn are required (LOGSEC_REQUIRE_ALL=1)"
        );
        eprintln!("skipped: needs {what} and unprivileged user namespaces (unshare -Urn)");
    }
    usable
}

/// Runs [`PRELUDE`] and `script` inside `unshare -Urn` with a daemon configured by `response`
/// (TOML lines of the `[response]` section) and listening on `http_port`, and a web server on
/// `web_port`.
fn run_in_namespace(script: &str, response: &str, web_port: u16, http_port: u16) {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    std::fs::create_dir_all(w.join("logs")).unwrap();
    std::fs::write(w.join("logs/access.log"), "").unwrap();
    // The client addresses live on the namespace's own loopback, so the host's own addresses
    // are not allowlisted here (they would be the attackers).
    std::fs::write(
        w.join("logsec.toml"),
        format!(
            "[agent]\ndata_dir = {:?}\nplugin_dir = {:?}\nrules = {:?}\n\n[[sources]]\npath = {:?}\nread_from = \"beginning\"\n\n\
             [response]\n{response}\nallow_own_addresses = false\nallowlist = [\"127.0.0.0/8\", \"203.0.113.8/32\"]\n\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\n",
            w.join("data"),
            built_plugins(),
            rules_file(),
            w.join("logs/*.log")
        ),
    )
    .unwrap();
    let out = Command::new("unshare")
        .args(["-Urn", "bash", "-c", &format!("{PRELUDE}{script}"), "enforce"])
        .arg(env!("CARGO_BIN_EXE_logsec"))
        .arg(w)
        .args([web_port.to_string(), http_port.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "{text}\n{}\ndaemon log:\n{}\ncli log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(w.join("daemon.log")).unwrap_or_default(),
        std::fs::read_to_string(w.join("cli.log")).unwrap_or_default()
    );
}

#[test]
fn nftables_bans_restores_heals_and_expires() {
    if namespace_usable(&["nft", "list", "ruleset"], "nftables (nft)") {
        run_in_namespace(
            SCRIPT,
            "backend = \"nftables\"\nforward = true\nban_ttl = \"14s\"",
            18081,
            18082,
        );
    }
}

#[test]
fn iptables_and_ipset_ban_restore_heal_and_expire() {
    if namespace_usable(&["ipset", "list"], "ipset and iptables") {
        run_in_namespace(
            IPSET_SCRIPT,
            "backend = \"iptables\"\nforward = true\nban_ttl = \"10s\"",
            18083,
            18084,
        );
    }
}
