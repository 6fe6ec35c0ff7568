// The live page: observe/ui/index.html, compiled in (see CMakeLists.txt).
#pragma once

#include <string_view>

namespace weft::observe {

std::string_view ui_page_html();

}  // namespace weft::observe
