#include "common/flags.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace custos {

std::vector<char*> ParseFlagsWithEnvironment(int argc, char** argv) {
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    std::string variable = absl::StrCat("CUSTOS_", absl::AsciiStrToUpper(name));
    const char* value = std::getenv(variable.c_str());
    if (value == nullptr) continue;
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      std::fprintf(stderr, "bad value in %s for --%s: %s\n", variable.c_str(),
                   std::string(name).c_str(), error.c_str());
      std::exit(2);
    }
  }
  // Command-line values are parsed last, so they override the environment.
  return absl::ParseCommandLine(argc, argv);
}

std::string ReadFileOrDie(const std::string& path, const std::string& flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "--%s: cannot read %s\n", flag.c_str(), path.c_str());
    std::exit(2);
  }
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

}  // namespace custos
