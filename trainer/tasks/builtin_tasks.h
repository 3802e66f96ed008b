// The built-in synthetic tasks (see task.h for their formats); internal to
// trainer/tasks: use MakeTask().
#ifndef SKILLPACK_TRAINER_TASKS_BUILTIN_TASKS_H_
#define SKILLPACK_TRAINER_TASKS_BUILTIN_TASKS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "trainer/tasks/task.h"

namespace skillpack {

// nullptr when `name` is not a built-in task.
std::unique_ptr<Task> MakeBuiltinTask(absl::string_view name);
std::vector<std::string> BuiltinTaskNames();

}  // namespace skillpack

#endif  // SKILLPACK_TRAINER_TASKS_BUILTIN_TASKS_H_
