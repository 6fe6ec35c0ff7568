// The live page's routes on the observability listener: GET /ui (the page),
// /api/v1/state (the state JSON with recent events) and /api/v1/events
// (server-sent events from the feed). All read-only.
#pragma once

#include "observe/event_feed.h"
#include "observe/http_server.h"

namespace weft::observe {

void add_ui_routes(ObserveServer& server, EventFeed& feed);

// The handlers, apart from the server, for tests.
HttpReply ui_page_reply(const HttpGet& request);
HttpReply state_reply(const StateView& state, const HttpGet& request);

}  // namespace weft::observe
