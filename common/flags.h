#ifndef CUSTOS_COMMON_FLAGS_H_
#define CUSTOS_COMMON_FLAGS_H_

#include <string>
#include <vector>

namespace custos {

// Parses the command line after applying environment overrides: every
// registered flag `--foo_bar` takes its value from `CUSTOS_FOO_BAR` when that
// is set; a flag given on the command line wins. Exits with a message naming
// the variable when an override does not parse. Returns positional arguments.
std::vector<char*> ParseFlagsWithEnvironment(int argc, char** argv);

// Reads a whole file; exits naming the flag when it cannot.
std::string ReadFileOrDie(const std::string& path, const std::string& flag);

}  // namespace custos

#endif  // CUSTOS_COMMON_FLAGS_H_
