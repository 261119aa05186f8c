//! The in-process run: a temporary single node with three users. After the
//! shared checks, a direct conversation and a restart that must keep
//! accounts, sessions and messages.

use anyhow::{ensure, Context};

use super::checks::{direct_conversation, shared_checks};
use super::{Account, Report};
use crate::client::Client;
use crate::config::ServerConfig;
use crate::storage::{SchemaCheck, Store};

/// The in-process run: a temporary server with three users.
pub(super) async fn run(report: &mut Report) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary data dir")?;
    let accounts = Account::smoke_users();
    let data_dir = dir.path().to_path_buf();
    let to_create = accounts.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let store = Store::open(&data_dir, SchemaCheck::RequireCurrent)?;
        for account in to_create {
            store.create_user(&account.record())?;
        }
        Ok(())
    })
    .await??;

    let config = ServerConfig::ephemeral(dir.path());
    let Some(server) = report
        .check("a server starts on a random loopback port", async { Ok(crate::startup::start(config.clone()).await?) })
        .await
    else {
        return Ok(());
    };
    let client = Client::new(&server.url())?;
    let (alice, bob, carol) = (&accounts[0], &accounts[1], &accounts[2]);
    let Some(state) = shared_checks(report, [&client, &client], alice, bob).await else {
        println!("skipped the remaining checks: they build on the one that failed");
        server.shutdown().await;
        return Ok(());
    };

    report.check("a direct conversation reaches its two users and no third", direct_conversation(&state, carol)).await;

    let before = state.bob.get(&format!("/api/rooms/{}/messages?limit=500", state.room)).await?.json()?;
    server.shutdown().await;
    report
        .check("a restart keeps accounts, sessions and messages", async {
            let server = crate::startup::start(config.clone()).await?;
            let bob = state.bob.at(&server.url())?;
            let after = bob.get(&format!("/api/rooms/{}/messages?limit=500", state.room)).await?.json()?;
            let mut alice_again = Client::new(&server.url())?;
            let login = alice_again.login(&alice.name, &alice.password).await?.status;
            server.shutdown().await;
            ensure!(before["messages"].as_array().is_some_and(|m| !m.is_empty()), "there was no history to compare");
            ensure!(after == before, "history after the restart differs:\nbefore {before}\nafter  {after}");
            ensure!(login == 200, "alice could not sign in after the restart ({login})");
            Ok(())
        })
        .await;
    Ok(())
}
