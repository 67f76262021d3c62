# The CPU addon, built by node-gyp on `npm install` (the default path; needs only Node's native
# build chain). Sources come from native/sources.json; CMakeLists.txt builds the same list
# (plus native/cuda when nvcc is found).
{
  "targets": [
    {
      "target_name": "rlhf",
      "sources": ["<!@(node scripts/sources.cjs addon-cpu)"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": [
        "NAPI_VERSION=9",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "RLHF_VERSION=\"<!(node -p \"require('./package.json').version\")\"",
        "RLHF_BUILD_SYSTEM=\"node-gyp\""
      ],
      "cflags!": ["-fno-exceptions", "-O2"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-frtti", "-ffp-contract=off", "-fno-math-errno", "-Wall", "-Wno-unused-parameter"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "OTHER_CPLUSPLUSFLAGS": ["-std=c++17", "-O3", "-ffp-contract=off", "-fno-math-errno"]
      },
      "ldflags": ["-pthread"]
    }
  ]
}
