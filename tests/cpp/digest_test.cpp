// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "core/error.h"
#include "digest/digest.h"

using namespace rolayer;

TEST(Digest, ParsesValidDigests) {
  std::string h256(64, 'a'), h384(96, '0'), h512(128, 'f');
  EXPECT_EQ(Digest::parse("sha256:" + h256).algorithm(), DigestAlgorithm::Sha256);
  EXPECT_EQ(Digest::parse("sha384:" + h384).algorithm(), DigestAlgorithm::Sha384);
  EXPECT_EQ(Digest::parse("sha512:" + h512).hex(), h512);
}

TEST(Digest, RejectsMalformedDigests) {
  std::string h(64, 'a');
  for (std::string bad : {std::string(), std::string("sha256"), "sha256:" + h.substr(1), "sha256:" + h + "a",
                          "SHA256:" + h, "sha256:" + std::string(63, 'a') + "A", "md5:" + h, ":" + h,
                          "sha256:" + std::string(63, 'a') + "g", "sha256 :" + h, "sha512:" + h}) {
    EXPECT_FALSE(Digest::valid(bad)) << bad;
    try {
      Digest::parse(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Code::Inval);
      EXPECT_NE(std::string(e.what()).find("invalid digest"), std::string::npos);
    }
  }
}

TEST(Digest, HashesStreamingAndKnownVectors) {
  Hasher h;
  h.update("a", 1);
  h.update("bc", 2);
  EXPECT_EQ(h.finish().str(), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Hasher h512(DigestAlgorithm::Sha512);
  EXPECT_EQ(h512.finish().str().substr(0, 20), "sha512:cf83e1357eefb");
  std::string zeros(1024, '\0');
  EXPECT_EQ(sha256_of(zeros.data(), zeros.size()).str(),
            "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef");
}

TEST(Digest, ChainIdVectors) {
  Digest empty = Digest::parse("sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef");
  EXPECT_EQ(chain_id(Digest(), empty), empty);
  EXPECT_EQ(chain_id(empty, empty).str(),
            "sha256:170b376f64fb30995c140276be3d71dfb256b308d86183ca3b22aa93a79ad548");
}
