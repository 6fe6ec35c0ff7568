#include "observe/ui_routes.h"

namespace weft::observe {

void add_ui_routes(ObserveServer& server, EventFeed& feed) {
  server.add_route("/ui", ui_page_reply);
  server.add_route("/ui/", ui_page_reply);
  server.add_route("/api/v1/state", [&feed](const HttpGet& request) { return state_reply(feed, request); });
  server.add_stream("/api/v1/events", [&feed](std::shared_ptr<EventSink> sink) { feed.add_sink(std::move(sink)); });
}

}  // namespace weft::observe
