//! One publish, four protocols: a FastWS topic such as
//! `executions:{"accountId":"A-1","symbol":"AAPL"}` subscribed by a
//! telemetry client (subscribe action), a BondX client (subscribe message,
//! allowed by `[bondx] extra_scope`), a FastWS client (its route) and fed
//! to the simple protocol's `trades` channel (`[simple.feeds]`). Each
//! protocol's subscribers get byte-identical frames, encoded once per
//! message (the encodings counter), and each client shows its protocol in
//! the admin listing and the metrics.

mod common;

use common::*;

#[tokio::test]
async fn one_publish_reaches_all_four_protocols_encoded_once_each() {
    let server = TestServer::start(&four_protocols_config());
    one_publish_reaches_all_four_protocols(&server).await;
}
