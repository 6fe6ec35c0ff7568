// The live page's handlers, apart from add_ui_routes (ui_routes.cpp), so
// tests link them without the listener.
#include "observe/ui_page.h"
#include "observe/ui_routes.h"

namespace weft::observe {

HttpReply ui_page_reply(const HttpGet&) {
  return {.status = 200, .content_type = "text/html; charset=utf-8", .body = std::string(ui_page_html())};
}

HttpReply state_reply(const StateView& state, const HttpGet&) {
  return {.status = 200, .content_type = "application/json", .body = state.state_json()};
}

}  // namespace weft::observe
