// revkv's version. CMakeLists.txt reads the three numbers below, so this
// header is the one place the version is written.

#ifndef REVKV_VERSION_H_
#define REVKV_VERSION_H_

#define REVKV_VERSION_MAJOR 0
#define REVKV_VERSION_MINOR 1
#define REVKV_VERSION_PATCH 0
// "MAJOR.MINOR.PATCH" of the headers a program was compiled with.
#define REVKV_VERSION "0.1.0"

namespace revkv {

// "MAJOR.MINOR.PATCH" of the revkv library the program runs with, which can
// differ from REVKV_VERSION when a shared library was replaced. Versions
// before 1.0 keep their ABI only within one MAJOR.MINOR.
const char* Version();

}  // namespace revkv

#endif  // REVKV_VERSION_H_
