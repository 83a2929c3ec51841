use super::*;

/// The error `text` (named `t`) fails validation with.
fn invalid(text: &str) -> String {
    RawConfig::parse(text, "t")
        .unwrap()
        .validate(None)
        .unwrap_err()
        .to_string()
}

const MIN: &str = r#"
[server]
listen = "127.0.0.1:8545"

[[route]]
path = "/eth"
dialect = "ethereum"
upstreams = ["ws://127.0.0.1:8546", "wss://backup.example/KEY"]
"#;

#[test]
fn issue_example_parses_with_defaults() {
    let s = RawConfig::parse(MIN, "t.toml")
        .unwrap()
        .validate(None)
        .unwrap();
    assert_eq!(s.listen.port(), 8545);
    assert_eq!(s.routes[0].upstreams.len(), 2);
    assert_eq!(s.routes[0].linger, Duration::from_millis(2000));
    assert_eq!(s.max_frame_bytes, 1 << 20);
}

#[test]
fn printed_config_is_complete_redacted_and_reloadable() {
    let raw = RawConfig::parse(MIN, "t.toml").unwrap();
    let text = raw.effective_toml(Some("0.0.0.0:9")).unwrap();
    assert!(!text.contains("KEY"), "{text}");
    assert!(
        text.contains("linger_ms = 2000"),
        "defaults are printed: {text}"
    );
    assert!(text.contains("listen = \"0.0.0.0:9\""));
    let again = RawConfig::parse(&text, "printed").unwrap();
    assert_eq!(again.routes[0].upstreams[1], "wss://backup.example/…");
}

#[test]
fn semantic_errors_point_to_the_line() {
    let text = format!(
        "{MIN}\n[[route]]\npath = \"/eth\"\ndialect = \"ethereum\"\nupstreams = [\"ws://x:1\"]\n"
    );
    let err = invalid(&text);
    assert!(
        err.contains("route[1]") && err.contains("line 10") && err.contains("duplicate"),
        "{err}"
    );
    let err = invalid(&MIN.replace("127.0.0.1:8545", "nope"));
    assert!(err.contains("(line 3)"), "{err}");
}

#[test]
fn env_references_expand_or_fail_clearly() {
    let get = |n: &str| (n == "KEY").then(|| "s3cr3t".to_string());
    assert_eq!(
        expand_env("wss://x/v2/${KEY}", get).unwrap(),
        "wss://x/v2/s3cr3t"
    );
    assert_eq!(expand_env("ws://a:1", get).unwrap(), "ws://a:1");
    assert_eq!(expand_env("wss://x/${NOPE}", get).unwrap_err(), "NOPE");
    let text = MIN.replace(
        "wss://backup.example/KEY",
        "wss://backup.example/${SUBMUX_TEST_UNSET_VAR}",
    );
    let err = invalid(&text);
    assert!(
        err.contains("SUBMUX_TEST_UNSET_VAR") && err.contains("not set"),
        "{err}"
    );
}

#[test]
fn bad_trusted_proxy_points_to_the_line() {
    let text = MIN.replace(
        "listen = \"127.0.0.1:8545\"",
        "listen = \"127.0.0.1:8545\"\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/33\"]",
    );
    let err = invalid(&text);
    assert!(
        err.contains("trusted_proxies (line 4)") && err.contains("\"10.0.0.0/33\""),
        "{err}"
    );
    let text = MIN.replace(
        "listen = \"127.0.0.1:8545\"",
        "listen = \"127.0.0.1:8545\"\ntrusted_proxies = [\"127.0.0.1\", \"fd00::/8\"]",
    );
    let s = RawConfig::parse(&text, "t")
        .unwrap()
        .validate(None)
        .unwrap();
    assert_eq!(s.trusted_proxies.len(), 2);
}

#[test]
fn cidr_ranges() {
    let n: IpNet = "10.0.0.0/8".parse().unwrap();
    assert!(n.contains("10.200.1.2".parse().unwrap()));
    assert!(!n.contains("11.0.0.1".parse().unwrap()));
    assert!(
        n.contains("::ffff:10.1.1.1".parse().unwrap()),
        "v4-mapped peers"
    );
    let one: IpNet = "127.0.0.1".parse().unwrap();
    assert!(one.contains("127.0.0.1".parse().unwrap()));
    assert!(!one.contains("127.0.0.2".parse().unwrap()));
    let v6: IpNet = "fd00::/8".parse().unwrap();
    assert!(v6.contains("fd12::1".parse().unwrap()));
    assert!(!v6.contains("fe80::1".parse().unwrap()));
    assert!("0.0.0.0/0"
        .parse::<IpNet>()
        .unwrap()
        .contains("8.8.8.8".parse().unwrap()));
    assert!("10.0.0.0/33".parse::<IpNet>().is_err());
    assert!("fd00::/129".parse::<IpNet>().is_err());
    assert!("nope".parse::<IpNet>().is_err());
    assert!("10.0.0.0/".parse::<IpNet>().is_err());
    // Host bits set: the range is the network's.
    let host: IpNet = "10.1.2.3/16".parse().unwrap();
    assert!(host.contains("10.1.200.1".parse().unwrap()));
    assert!(!host.contains("10.2.0.1".parse().unwrap()));
    // An IPv4-mapped range matches IPv4 peers and mapped peers alike.
    let mapped: IpNet = "::ffff:10.0.0.0/104".parse().unwrap();
    assert!(mapped.contains("10.9.9.9".parse().unwrap()));
    assert!(mapped.contains("::ffff:10.9.9.9".parse().unwrap()));
    assert!(!mapped.contains("11.0.0.1".parse().unwrap()));
    // IPv4 ranges never match other IPv6 addresses.
    assert!(!n.contains("fd00::a00:1".parse().unwrap()));
}

#[test]
fn env_override_of_listen() {
    let s = RawConfig::parse(MIN, "t.toml")
        .unwrap()
        .validate(Some("0.0.0.0:9000"))
        .unwrap();
    assert_eq!(s.listen.to_string(), "0.0.0.0:9000");
}

#[test]
fn unknown_keys_are_rejected_with_line() {
    let text = MIN.replace(
        "dialect = \"ethereum\"",
        "dialect = \"ethereum\"\nupstream = []",
    );
    let err = RawConfig::parse(&text, "t.toml").unwrap_err().to_string();
    assert!(err.contains("unknown field `upstream`"), "{err}");
    assert!(err.contains("line 8"), "{err}");
}

#[test]
fn semantic_errors_name_the_key_and_hide_secrets() {
    let text = MIN.replace("ws://127.0.0.1:8546", "http://secret-host/KEY123");
    let err = RawConfig::parse(&text, "t.toml")
        .unwrap()
        .validate(None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("route[0]") && err.contains("not a ws://"),
        "{err}"
    );
    assert!(!err.contains("KEY123"), "{err}");
    let text = MIN.replace("/eth", "/metrics");
    assert!(RawConfig::parse(&text, "t")
        .unwrap()
        .validate(None)
        .is_err());
    let text = MIN.replace("ethereum", "bitcoin");
    assert!(RawConfig::parse(&text, "t").is_err());
}

#[test]
fn lnbits_routes_and_backplane() {
    let text = r#"
[[route]]
path = "/api/v1/ws"
dialect = "lnbits"
replay_buffer_len = 4

[backplane]
redis = "redis://127.0.0.1:6379/0"
"#;
    let s = RawConfig::parse(text, "t").unwrap().validate(None).unwrap();
    let r = &s.routes[0];
    assert!(r.upstreams.is_empty(), "hub mode needs no upstreams");
    assert_eq!(r.lnbits.replay_buffer_len, 4);
    assert_eq!(r.lnbits.max_push_bytes, 64 * 1024);
    assert_eq!(s.backplane.as_ref().unwrap().channel_prefix, "submux");
    let printed = RawConfig::parse(text, "t")
        .unwrap()
        .effective_toml(None)
        .unwrap();
    assert!(printed.contains("replay_ttl_ms = 600000"), "{printed}");
    let err = invalid;
    let e = err(&MIN.replace("upstreams = [", "replay_buffer_len = 3\nupstreams = ["));
    assert!(
        e.contains("replay_buffer_len applies only to routes with dialect = \"lnbits\""),
        "{e}"
    );
    let e = err(&text.replace("replay_buffer_len = 4", "max_push_bytes = 0"));
    assert!(
        e.contains("max_push_bytes must be greater than 0") && e.contains("line 2"),
        "{e}"
    );
    let e = err(&text.replace("redis://127.0.0.1:6379/0", "http://x"));
    assert!(e.contains("backplane.redis"), "{e}");
    let e = err(&text.replace(
        "replay_buffer_len = 4",
        "push_token = \"${SUBMUX_TEST_UNSET_TOKEN}\"",
    ));
    assert!(
        e.contains("push_token uses ${SUBMUX_TEST_UNSET_TOKEN}"),
        "{e}"
    );
    let e = err(&text.replace("replay_buffer_len = 4", "push_token = \"\""));
    assert!(e.contains("push_token is empty"), "{e}");
}

/// deploy/submux.example.toml parses, validates, and mentions every key serde knows.
#[test]
fn example_config_documents_every_key() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/submux.example.toml");
    let text = std::fs::read_to_string(path).unwrap();
    RawConfig::parse(&text, path)
        .unwrap()
        .validate(None)
        .unwrap();
    let fields = |probe: &str| -> Vec<String> {
        let err = RawConfig::parse(probe, "probe").unwrap_err().to_string();
        let list = err
            .split("expected one of")
            .nth(1)
            .unwrap_or_else(|| panic!("{err}"));
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    let server = fields("[server]\nzz_unknown = 1\n");
    let route = fields("[[route]]\npath = \"/x\"\ndialect = \"ethereum\"\nzz_unknown = 1\n");
    let backplane = fields("[backplane]\nredis = \"redis://x\"\nzz_unknown = 1\n");
    let lnbits =
        fields("[[route]]\npath = \"/x\"\ndialect = \"lnbits\"\n[route.lnbits]\nzz_unknown = 1\n");
    assert_eq!(lnbits.len(), 6, "{lnbits:?}");
    let payments = fields(
        "[[route]]\npath = \"/x\"\ndialect = \"payments\"\n[route.payments]\nzz_unknown = 1\n",
    );
    assert_eq!(payments.len(), 10, "{payments:?}");
    assert!(
        server.len() >= 10 && route.len() >= 10 && backplane.len() >= 5,
        "{server:?} {route:?} {backplane:?}"
    );
    for key in server
        .iter()
        .chain(&route)
        .chain(&backplane)
        .chain(&lnbits)
        .chain(&payments)
    {
        assert!(
            text.lines().any(|l| {
                let l = l.trim_start().trim_start_matches("# ");
                l.starts_with(&format!("{key} ="))
                    || l == format!("[route.{key}]")
                    || l == format!("[[route.payments.{key}]]")
            }),
            "deploy/submux.example.toml does not document `{key}`"
        );
    }
}

/// `[route.lnbits]` is the place for LNbits keys; the same keys at the route's top level
/// still work, with a warning each; a key in both places, or the table on another dialect,
/// is an error.
#[test]
fn lnbits_keys_live_in_their_table_and_the_old_form_warns() {
    let base = "[[route]]\npath = \"/api/v1/ws\"\ndialect = \"lnbits\"\n";
    let ok = |text: &str| RawConfig::parse(text, "t").unwrap().validate(None).unwrap();
    let err = invalid;
    let table = ok(&format!(
        "{base}[route.lnbits]\nmax_push_bytes = 7\nreplay_ttl_ms = 5\n"
    ));
    assert_eq!(table.routes[0].lnbits.max_push_bytes, 7);
    assert_eq!(table.routes[0].lnbits.replay_ttl, Duration::from_millis(5));
    assert!(table.warnings.is_empty(), "{:?}", table.warnings);

    let old = ok(&format!("{base}max_push_bytes = 7\n"));
    assert_eq!(old.routes[0].lnbits.max_push_bytes, 7);
    assert_eq!(old.warnings.len(), 1);
    assert!(
        old.warnings[0].contains("max_push_bytes") && old.warnings[0].contains("[route.lnbits]"),
        "{:?}",
        old.warnings
    );

    let both = err(&format!(
        "{base}max_push_bytes = 7\n[route.lnbits]\nmax_push_bytes = 8\n"
    ));
    assert!(both.contains("max_push_bytes is set both"), "{both}");

    let elsewhere = err(
        "[[route]]\npath = \"/eth\"\ndialect = \"ethereum\"\nupstreams = [\"ws://x:1\"]\n[route.lnbits]\nmax_channels = 3\n",
    );
    assert!(
        elsewhere.contains("max_channels applies only to routes with dialect = \"lnbits\""),
        "{elsewhere}"
    );

    // --print-config writes the table, every default filled in, the token hidden.
    let raw = RawConfig::parse(&format!("{base}push_token = \"sekret\"\n"), "t").unwrap();
    let printed = raw.effective_toml(None).unwrap();
    assert!(
        printed.contains("[route.lnbits]") && !printed.contains("sekret"),
        "{printed}"
    );
    let again = RawConfig::parse(&printed, "again")
        .unwrap()
        .validate(None)
        .unwrap();
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
}

#[test]
fn hedge_is_one_by_default_and_at_most_the_number_of_upstreams() {
    let parse = |extra: &str| {
        RawConfig::parse(&format!("{MIN}{extra}"), "t")
            .unwrap()
            .validate(None)
    };
    assert_eq!(parse("").unwrap().routes[0].hedge, 1);
    assert_eq!(parse("hedge = 2\n").unwrap().routes[0].hedge, 2);
    for bad in ["hedge = 0\n", "hedge = 3\n"] {
        let err = parse(bad).unwrap_err().to_string();
        assert!(
            err.contains("route[0]")
                && err.contains("hedge must be between 1 and the number of upstreams (2)"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn backfill_caps_are_bounded_and_default_to_128_blocks_256_ledgers_1000_slots() {
    let s = RawConfig::parse(MIN, "t").unwrap().validate(None).unwrap();
    let r = &s.routes[0];
    assert_eq!(
        (
            r.backfill_max_blocks,
            r.backfill_max_ledgers,
            r.backfill_max_slots
        ),
        (128, 256, 1000)
    );
    for bad in ["backfill_max_ledgers = 0", "backfill_max_ledgers = 10001"] {
        let text = format!("{MIN}{bad}\n");
        let err = invalid(&text);
        assert!(
            err.contains("backfill_max_ledgers must be between 1 and 10000"),
            "{err}"
        );
    }
}

#[test]
fn payments_log_is_on_disk_by_default_in_memory_with_an_empty_data_dir_and_never_shared() {
    let base = format!(
        "{MIN}\n[[route]]\npath = \"/p\"\ndialect = \"payments\"\n[route.payments]\nxrpl = \"/x\"\n"
    )
    .replace("[[route]]\npath = \"/p\"", "[[route]]\npath = \"/x\"\ndialect = \"xrpl\"\nupstreams = [\"ws://127.0.0.1:1\"]\n\n[[route]]\npath = \"/p\"");
    let parse = |text: &str| RawConfig::parse(text, "t").unwrap().validate(None);
    let dir = |s: &crate::config::Settings| {
        s.routes
            .iter()
            .find(|r| r.path == "/p")
            .and_then(|r| r.payments.as_ref())
            .map(|p| p.data_dir.clone())
    };
    let s = parse(&base).unwrap();
    assert_eq!(dir(&s), Some(Some("submux-data".into())));
    let s = parse(&format!("{base}data_dir = \"\"\n")).unwrap();
    assert_eq!(dir(&s), Some(None), "\"\" keeps the log in memory");
    let two = format!(
        "{base}\n[[route]]\npath = \"/q\"\ndialect = \"payments\"\n[route.payments]\nxrpl = \"/x\"\n"
    );
    let err = parse(&two).unwrap_err().to_string();
    assert!(err.contains("needs a data_dir of its own"), "{err}");
}
