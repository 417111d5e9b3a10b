//! `kybern token create|list|delete`: bootstrap tokens (kubeadm's `kubeadm token`), kept
//! as `kube-system/bootstrap-token-<id>` Secrets through the API with an administrator's
//! kubeconfig.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _};
use apiserver::api::pipeline::bootstrap_token::{self as bt, Token, TokenOptions};
use base64::Engine as _;
use clap::{Args, Subcommand};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::config::Kubeconfig;
use kube::Api;

#[derive(Args)]
pub(crate) struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
    /// The administrator's kubeconfig (that of `kybern up`/`server` by default).
    #[arg(
        long,
        env = "KUBECONFIG",
        global = true,
        default_value = "/var/lib/kybern/admin.kubeconfig"
    )]
    kubeconfig: PathBuf,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a bootstrap token and print it (or, with --print-join-command, the command a
    /// node joins with).
    Create {
        /// The token to make (`[a-z0-9]{6}.[a-z0-9]{16}`); a random one by default.
        token: Option<String>,
        /// How long the token is valid (`24h`, `90m`, `1h30m`); `0` never expires.
        #[arg(long, default_value = "24h", value_parser = ttl_seconds)]
        ttl: u64,
        /// A note for humans, shown by `kybern token list`.
        #[arg(long)]
        description: Option<String>,
        /// Extra groups the token's user is in, each `system:bootstrappers:...`.
        #[arg(long, value_delimiter = ',', default_value = bt::DEFAULT_NODE_GROUP)]
        groups: Vec<String>,
        /// What the token may be used for: `signing` (cluster-info), `authentication`.
        #[arg(long, value_delimiter = ',', default_value = "signing,authentication")]
        usages: Vec<String>,
        /// Print `kybern agent --server ... --token ... --ca-cert-hash ...` instead of the
        /// token alone.
        #[arg(long)]
        print_join_command: bool,
    },
    /// List the bootstrap tokens.
    List,
    /// Delete bootstrap tokens, by id or whole token.
    Delete {
        #[arg(required = true, value_name = "TOKEN_OR_ID")]
        tokens: Vec<String>,
    },
}

pub(crate) async fn run(args: TokenArgs) -> anyhow::Result<()> {
    let kubeconfig = Kubeconfig::read_from(&args.kubeconfig)
        .map_err(|e| anyhow!("reading {}: {e}", args.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &Default::default())
        .await
        .with_context(|| format!("using {}", args.kubeconfig.display()))?;
    let client = kube::Client::try_from(config)?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), bt::NAMESPACE);
    match args.command {
        TokenCommand::Create {
            token,
            ttl,
            description,
            groups,
            usages,
            print_join_command,
        } => {
            let token = match token {
                Some(t) => Token::parse(&t).ok_or_else(|| {
                    anyhow!("the token {t:?} is not of the form [a-z0-9]{{6}}.[a-z0-9]{{16}}")
                })?,
                None => Token::generate(),
            };
            let options = options(ttl, description, groups, usages)?;
            let secret: Secret = serde_json::from_value(bt::secret(&token, &options))?;
            secrets
                .create(&PostParams::default(), &secret)
                .await
                .with_context(|| format!("creating bootstrap token {:?}", token.id))?;
            if print_join_command {
                let maps: Api<ConfigMap> = Api::namespaced(client, bt::CLUSTER_INFO_NAMESPACE);
                let (server, ca) = cluster(&maps, &kubeconfig).await?;
                let pin = bt::ca_cert_hash(&ca)
                    .ok_or_else(|| anyhow!("the cluster CA is not a PEM certificate"))?;
                println!("kybern agent --server {server} --token {token} --ca-cert-hash {pin}");
            } else {
                println!("{token}");
            }
            Ok(())
        }
        TokenCommand::List => {
            let list = secrets
                .list(&ListParams::default().fields(&format!("type={}", bt::SECRET_TYPE)))
                .await?;
            let now = apiserver::object::unix_now();
            println!(
                "{:<24}{:<10}{:<22}{:<26}{:<30}EXTRA GROUPS",
                "TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION"
            );
            for s in list.items {
                let value = serde_json::to_value(&s)?;
                let Some(token) = bt::token_of(&value) else {
                    continue;
                };
                let expires = bt::data(&value, bt::EXPIRATION);
                let ttl = match expires.as_deref().map(apiserver::object::parse_rfc3339) {
                    None => "<forever>".to_string(),
                    Some(Some(t)) if t > now => human(t - now),
                    Some(_) => "<invalid>".to_string(),
                };
                let usages: Vec<&str> = ["authentication", "signing"]
                    .into_iter()
                    .filter(|u| {
                        bt::data(&value, &format!("usage-bootstrap-{u}")).as_deref() == Some("true")
                    })
                    .collect();
                println!(
                    "{:<24}{:<10}{:<22}{:<26}{:<30}{}",
                    token.to_string(),
                    ttl,
                    expires.unwrap_or_else(|| "<never>".into()),
                    usages.join(","),
                    bt::data(&value, bt::DESCRIPTION).unwrap_or_else(|| "<none>".into()),
                    bt::data(&value, bt::EXTRA_GROUPS).unwrap_or_default(),
                );
            }
            Ok(())
        }
        TokenCommand::Delete { tokens } => {
            for t in tokens {
                let id = match Token::parse(&t) {
                    Some(token) => token.id,
                    None if Token::is_id(&t) => t,
                    None => {
                        bail!("{t:?} is neither a bootstrap token nor a token id ([a-z0-9]{{6}})")
                    }
                };
                match secrets
                    .delete(
                        &format!("{}{id}", bt::SECRET_PREFIX),
                        &DeleteParams::default(),
                    )
                    .await
                {
                    Ok(_) => println!("bootstrap token {id:?} deleted"),
                    Err(kube::Error::Api(s)) if s.code == 404 => {
                        bail!("bootstrap token {id:?} not found")
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("deleting bootstrap token {id:?}"))
                    }
                }
            }
            Ok(())
        }
    }
}

/// The Secret's options from the flags, checked as kubeadm checks them.
fn options(
    ttl: u64,
    description: Option<String>,
    groups: Vec<String>,
    usages: Vec<String>,
) -> anyhow::Result<TokenOptions> {
    for g in &groups {
        let rest = g.strip_prefix(bt::EXTRA_GROUP_PREFIX).unwrap_or_default();
        let ok = !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
            && !rest.ends_with([':', '-']);
        if !ok {
            bail!(
                "--groups {g:?} must match {}[a-z0-9:-]{{0,255}}[a-z0-9]",
                bt::EXTRA_GROUP_PREFIX
            );
        }
    }
    for u in &usages {
        if u != "signing" && u != "authentication" {
            bail!("--usages {u:?} is not one of signing, authentication");
        }
    }
    let ttl = i64::try_from(ttl).context("--ttl is too long")?;
    Ok(TokenOptions {
        description,
        expires: (ttl > 0).then(|| apiserver::object::unix_now() + ttl),
        usages,
        groups,
    })
}

/// The server URL and CA nodes join with: `cluster-info`'s (what a joining node checks),
/// else the administrator's kubeconfig's.
async fn cluster(maps: &Api<ConfigMap>, admin: &Kubeconfig) -> anyhow::Result<(String, String)> {
    let published = maps
        .get_opt(bt::CLUSTER_INFO)
        .await?
        .and_then(|cm| cm.data?.get(bt::CLUSTER_INFO_KUBECONFIG).cloned())
        .and_then(|kc| Kubeconfig::from_yaml(&kc).ok());
    let from = published.as_ref().unwrap_or(admin);
    let context = from
        .current_context
        .as_ref()
        .and_then(|c| from.contexts.iter().find(|n| &n.name == c))
        .and_then(|n| n.context.as_ref())
        .map(|c| c.cluster.clone());
    let cluster = from
        .clusters
        .iter()
        .find(|c| context.as_ref().is_none_or(|name| &c.name == name))
        .or(from.clusters.first())
        .and_then(|c| c.cluster.clone())
        .ok_or_else(|| anyhow!("no cluster in the kubeconfig"))?;
    let server = cluster
        .server
        .ok_or_else(|| anyhow!("the kubeconfig names no server"))?;
    let ca = cluster
        .certificate_authority_data
        .ok_or_else(|| anyhow!("the kubeconfig carries no CA data"))?;
    let ca = base64::engine::general_purpose::STANDARD.decode(ca.trim())?;
    Ok((server, String::from_utf8(ca)?))
}

/// `24h`, `90m`, `1h30m`, `45s` or `0` as seconds (Go's duration syntax, whole units).
fn ttl_seconds(s: &str) -> Result<u64, String> {
    if s == "0" {
        return Ok(0);
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(format!("{s:?} is not a duration such as 24h, 90m or 1h30m")),
        };
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{s:?} is not a duration such as 24h, 90m or 1h30m"))?;
        total += n * unit;
        number.clear();
    }
    if !number.is_empty() {
        return Err(format!("{s:?} needs a unit (h, m or s)"));
    }
    Ok(total)
}

/// A TTL as kubeadm prints it: `23h`, `59m`, `30s`.
fn human(seconds: i64) -> String {
    match seconds {
        s if s >= 3600 => format!("{}h", s / 3600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_read_as_go_durations() {
        let cases = [
            ("24h", Ok(86_400)),
            ("1h30m", Ok(5_400)),
            ("45s", Ok(45)),
            ("0", Ok(0)),
            ("10", Err(())),
            ("1d", Err(())),
        ];
        for (s, want) in cases {
            assert_eq!(ttl_seconds(s).map_err(|_| ()), want, "{s}");
        }
    }

    #[test]
    fn extra_groups_must_be_below_system_bootstrappers() {
        let cases = [
            (bt::DEFAULT_NODE_GROUP, true),
            ("system:bootstrappers:worker-pool-1", true),
            ("system:masters", false),
            ("system:bootstrappers:", false),
            ("system:bootstrappers:Upper", false),
        ];
        for (group, ok) in cases {
            let got = options(60, None, vec![group.into()], vec!["signing".into()]);
            assert_eq!(got.is_ok(), ok, "{group}");
        }
    }
}
