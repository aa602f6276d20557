// Lists the outbox messages a peer refused for good (dead letters) in a
// service's store, one JSON object per line, oldest first:
//   outbox_dead_letters --database=sqlite:.custos/dev/access.db
// The payload is the request as sent, base64 (decode it with the method's
// request type). Read-only: it applies no migration.
#include <algorithm>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/escaping.h"
#include "absl/time/time.h"
#include "common/database.h"
#include "common/outbox.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

ABSL_FLAG(std::string, database, "",
          "the service's store: sqlite:PATH or postgresql://...");
ABSL_FLAG(int, limit, 1000, "most dead letters to print");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  auto db = custos::OpenDatabase(absl::GetFlag(FLAGS_database), {});
  if (!db.ok()) {
    std::fprintf(stderr, "cannot open the store: %s\n",
                 db.status().ToString().c_str());
    return 1;
  }
  int64_t after = 0;
  int left = absl::GetFlag(FLAGS_limit);
  while (left > 0) {
    auto letters = custos::ListDeadLetters(**db, after, std::min(left, 100));
    if (!letters.ok()) {
      std::fprintf(stderr, "cannot read dead letters: %s\n",
                   letters.status().ToString().c_str());
      return 1;
    }
    if (letters->empty()) break;
    for (const custos::DeadLetter& letter : *letters) {
      google::protobuf::Struct line;
      auto& fields = *line.mutable_fields();
      fields["id"].set_number_value(static_cast<double>(letter.message.id));
      fields["destination"].set_string_value(letter.message.destination);
      fields["method"].set_string_value(letter.message.method);
      fields["attempts"].set_number_value(
          static_cast<double>(letter.message.attempts));
      fields["error"].set_string_value(letter.error);
      fields["create_time"].set_string_value(absl::FormatTime(
          absl::RFC3339_full, letter.created, absl::UTCTimeZone()));
      fields["dead_time"].set_string_value(absl::FormatTime(
          absl::RFC3339_full, letter.died, absl::UTCTimeZone()));
      fields["payload"].set_string_value(
          absl::Base64Escape(letter.message.payload));
      std::string json;
      (void)google::protobuf::util::MessageToJsonString(line, &json);
      std::printf("%s\n", json.c_str());
      after = letter.message.id;
      --left;
    }
  }
  return 0;
}
