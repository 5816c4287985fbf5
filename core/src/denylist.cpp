#include "devicegate/denylist.hpp"

#include "devicegate/json_fields.hpp"
#include "devicegate/redis_model.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <stdexcept>

namespace devicegate {

denylist_change parse_denylist_change(std::string_view text) {
    const nlohmann::json j = parse_json_object(text);
    auto field = [&](const char* name) { return string_field(j, name); };
    denylist_change c;
    const std::string op = field("op"), kind = field("kind");
    if (op == "revoke") c.revoke = true;
    else if (op == "unrevoke") c.revoke = false;
    else throw std::invalid_argument("op must be revoke or unrevoke");
    if (kind == "serial") c.serial = true;
    else if (kind == "device") c.serial = false;
    else throw std::invalid_argument("kind must be serial or device");
    c.value = field("value");
    if (c.serial) {
        auto hex = normalize_serial_hex(c.value);
        if (!hex) throw std::invalid_argument("value is not a hex serial");
        c.value = *hex;
    }
    return c;
}

std::string encode_denylist_change(const denylist_change& change) {
    return nlohmann::json{{"op", change.revoke ? "revoke" : "unrevoke"},
                          {"kind", change.serial ? "serial" : "device"},
                          {"value", change.value}}
        .dump();
}

denylist_additions added_entries(const denylist* prev, const denylist& next) {
    denylist_additions out;
    for (const auto& d : next.devices) {
        if (!prev || prev->devices.find(d) == prev->devices.end()) out.devices.push_back(d);
    }
    for (const auto& s : next.serials) {
        if (prev && prev->serials.find(s) != prev->serials.end()) continue;
        if (auto key = serial_key_from_hex(s)) out.serials.push_back(*key);
    }
    std::sort(out.serials.begin(), out.serials.end());
    return out;
}

void save_denylist_file(const std::string& path, const denylist& list, std::int64_t synced_at) {
    nlohmann::json j{{"serials", std::vector<std::string>(list.serials.begin(), list.serials.end())},
                     {"devices", std::vector<std::string>(list.devices.begin(), list.devices.end())},
                     {"synced_at", synced_at}};
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << j.dump();
        out.flush();
        if (!out) throw std::runtime_error(tmp + ": write failed");
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error(path + ": rename failed");
}

denylist load_denylist_file(const std::string& path, std::int64_t& synced_at) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error(path + ": cannot open");
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(in);
        denylist list;
        for (const auto& s : j.at("serials")) {
            if (auto hex = normalize_serial_hex(s.get<std::string>())) list.serials.insert(*hex);
        }
        for (const auto& d : j.at("devices")) list.devices.insert(d.get<std::string>());
        synced_at = j.at("synced_at").get<std::int64_t>();
        return list;
    } catch (const nlohmann::json::exception& e) {
        throw std::runtime_error(path + ": malformed deny-list cache: " + e.what());
    }
}

}  // namespace devicegate
