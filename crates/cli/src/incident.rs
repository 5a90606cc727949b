//! `keygate panic`: the incident button. Every virtual key stops working within a second.

use anyhow::Context;
use clap::Args;
use keygate_core::ClientStatus;
use serde_json::json;

use crate::home::{admin_event, Unlocked};
use crate::output::print_json;

/// `keygate panic`
#[derive(Args, Debug)]
pub struct PanicArgs {
    /// Print what was done as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Freezes every active client in one transaction, each with its `client.freeze` event
/// and a `vault.panic` event naming them all; a running gateway refuses them within a
/// second. Clients already frozen or revoked stay as they are, and so do clients whose
/// record fails verification: the gateway refuses those already, and freezing them would
/// mean tagging what someone else wrote. Undo it client by client with `client unfreeze`.
pub fn run(mut vault: Unlocked, args: &PanicArgs) -> anyhow::Result<()> {
    let ((frozen, refused_already), unsealed) = vault
        .audited_change(|s, master| {
            let mut frozen = Vec::new();
            let mut refused_already = 0_usize;
            // Read inside the transaction: a client issued meanwhile is frozen too.
            for row in s.client_rows()? {
                match row {
                    Ok(client) if client.verify_record(master).is_err() => refused_already += 1,
                    Ok(client) if client.status == ClientStatus::Active => {
                        s.set_client_status(
                            &client.name,
                            ClientStatus::Active,
                            ClientStatus::Frozen,
                            master,
                        )?;
                        frozen.push(client.name);
                    }
                    Ok(_) => {}
                    Err(_) => refused_already += 1,
                }
            }
            let names: Vec<&str> = frozen.iter().map(|n| n.as_str()).collect();
            let events: Vec<_> = names
                .iter()
                .map(|name| {
                    admin_event(
                        "client.freeze",
                        name,
                        json!({ "from": "active", "to": "frozen", "reason": "panic" }),
                    )
                })
                .chain([admin_event(
                    "vault.panic",
                    "clients",
                    json!({ "frozen_clients": names }),
                )])
                .collect();
            Ok(((frozen, refused_already), events))
        })
        .context("freezing every client")?;
    crate::home::warn_if_unsealed(unsealed);
    if args.json {
        return print_json(&json!({
            "frozen": frozen,
            "refused_already": refused_already,
        }));
    }
    if frozen.is_empty() {
        println!("no active client to freeze");
    } else {
        let names: Vec<&str> = frozen.iter().map(|n| n.as_str()).collect();
        println!(
            "froze {} client(s): {}; a running gateway refuses them within a second",
            frozen.len(),
            names.join(", ")
        );
    }
    if refused_already > 0 {
        println!(
            "{refused_already} client record(s) fail verification and are refused already; \
             see `keygate client list`"
        );
    }
    println!("undo client by client with `keygate client unfreeze NAME`");
    Ok(())
}
